"""The catalog managers edit: films and subscription plans; plus the deletion log etl reads.

etl copies these rows into billing by (`updated_at`, `id`) — indexed, bumped on every change,
including a change of a plan's film list (catalog.signals) and propagates deletions through DeletionLog tombstones.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from catalog.currencies import CURRENCY_CHOICES, format_money

# Stripe's largest amount for a single charge (in minor units of any currency).
MAX_PRICE_AMOUNT = 99_999_999


class Film(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    active = models.BooleanField(
        default=True, help_text="Inactive films are kept in billing but no longer sold."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "catalog_film"
        ordering = ["title"]
        indexes = [models.Index(fields=["updated_at", "id"], name="film_updated_at_id_idx")]

    def __str__(self) -> str:
        return self.title

    def clean_fields(self, exclude=None) -> None:
        # A title of spaces counts as blank.
        if isinstance(self.title, str):
            self.title = self.title.strip()
        super().clean_fields(exclude)


class Plan(models.Model):
    class PeriodUnit(models.TextChoices):
        MONTH = "month", "month"
        DAY = "day", "day"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Lengths and ranges as billing accepts them (etl would see a 422 otherwise).
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    price_amount = models.PositiveIntegerField(
        "price (minor units)",
        help_text="In the currency's minor units: 999 with USD is 9.99 USD.",
    )
    currency = models.CharField(
        max_length=3,
        choices=CURRENCY_CHOICES,
        default="usd",
        error_messages={"invalid_choice": "%(value)s is not a supported ISO 4217 currency."},
        help_text="ISO 4217 currency code.",
    )
    period_unit = models.CharField(
        max_length=5, choices=PeriodUnit.choices, default=PeriodUnit.MONTH
    )
    period_count = models.PositiveSmallIntegerField(
        default=1,
        validators=[
            MinValueValidator(1, "A period is at least 1 day or month."),
            MaxValueValidator(1000, "A period is at most 1000 days or months."),
        ],
        help_text="How many period units one payment buys (1 month, 30 days, ...).",
    )
    refund_window_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MaxValueValidator(3650, "A refund window is at most 3650 days.")],
        help_text="Days after a payment in which the user may ask for a refund (0 = never).",
    )
    active = models.BooleanField(
        default=True, help_text="Only active plans can be bought; existing subscriptions run on."
    )
    all_films = models.BooleanField(
        "covers all films",
        default=False,
        help_text="Covers every film, present and future; the film list below is then ignored.",
    )
    films = models.ManyToManyField(Film, blank=True, related_name="plans")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "catalog_plan"
        ordering = ["name"]
        indexes = [models.Index(fields=["updated_at", "id"], name="plan_updated_at_id_idx")]
        # The same rules as clean(), kept by the database for writes that skip the admin's forms.
        constraints = [
            models.CheckConstraint(
                condition=Q(price_amount__gt=0) & Q(price_amount__lte=MAX_PRICE_AMOUNT),
                name="plan_price_amount_positive",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="plan_currency_iso4217"
            ),
            models.CheckConstraint(
                condition=Q(period_unit__in=["month", "day"]), name="plan_period_unit_valid"
            ),
            models.CheckConstraint(condition=Q(period_count__gte=1), name="plan_period_count_min"),
            models.CheckConstraint(
                condition=Q(refund_window_days__gte=0), name="plan_refund_window_days_min"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def price_display(self) -> str:
        return format_money(self.price_amount, self.currency) if self.price_amount else "—"

    @property
    def period_display(self) -> str:
        unit = self.period_unit + ("s" if self.period_count != 1 else "")
        return f"{self.period_count} {unit}"

    def clean_fields(self, exclude=None) -> None:
        # Normalise first, so " EUR " validates as "eur" and a name of spaces counts as blank.
        if isinstance(self.name, str):
            self.name = self.name.strip()
        if isinstance(self.currency, str):
            self.currency = self.currency.strip().lower()
        super().clean_fields(exclude)

    def clean(self) -> None:
        if self.price_amount is not None and self.price_amount <= 0:
            raise ValidationError({"price_amount": "The price must be greater than zero."})
        if self.price_amount is not None and self.price_amount > MAX_PRICE_AMOUNT:
            raise ValidationError(
                {
                    "price_amount": f"The price is larger than one card payment allows "
                    f"({format_money(MAX_PRICE_AMOUNT, self.currency or 'usd')})."
                }
            )


class DeletionLog(models.Model):
    """A tombstone per deleted film or plan, so etl can deactivate it in billing."""

    class Kind(models.TextChoices):
        FILM = "film", "film"
        PLAN = "plan", "plan"

    model = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.UUIDField()
    deleted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "catalog_deletion_log"
        ordering = ["deleted_at", "id"]
        indexes = [models.Index(fields=["deleted_at", "id"], name="deletion_deleted_at_id_idx")]
        verbose_name = "deletion log entry"
        verbose_name_plural = "deletion log"

    def __str__(self) -> str:
        return f"{self.model} {self.object_id} deleted at {self.deleted_at:%Y-%m-%d %H:%M:%S}"
