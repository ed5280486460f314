"""The catalog managers edit: films, subscription plans, promo codes and personal discounts; plus
the deletion log etl reads.

etl copies these rows into billing by (`updated_at`, `id`) — indexed, bumped on every change,
including a change of a plan's film list (catalog.signals) and propagates deletions through DeletionLog tombstones.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

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


class Duration(models.TextChoices):
    """How long a promo code's discount lasts on a subscription (Stripe's coupon durations)."""

    ONCE = "once", "the first payment only"
    REPEATING = "repeating", "a number of payments"
    FOREVER = "forever", "every renewal"


class DiscountTerms(models.Model):
    """Percent off, or an amount off in one currency; for all plans or the ones listed."""

    percent_off = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[
            MinValueValidator(1, "At least 1 percent."),
            MaxValueValidator(100, "At most 100 percent."),
        ],
        help_text="1–100. Leave empty for an amount off.",
    )
    amount_off = models.PositiveIntegerField(
        "amount off (minor units)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_PRICE_AMOUNT)],
        help_text="In the currency's minor units: 300 with USD is 3.00 USD off. Leave empty for "
        "a percentage.",
    )
    currency = models.CharField(
        max_length=3,
        choices=CURRENCY_CHOICES,
        blank=True,
        help_text="The currency of the amount off; it applies only to plans priced in it.",
    )
    all_plans = models.BooleanField(
        "applies to all plans", default=True, help_text="Untick to choose plans below."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    @property
    def discount_display(self) -> str:
        if self.percent_off:
            return f"{self.percent_off}% off"
        if self.amount_off:
            return f"{format_money(self.amount_off, self.currency or 'usd')} off"
        return "—"

    def clean_fields(self, exclude=None) -> None:
        if isinstance(self.currency, str):
            self.currency = self.currency.strip().lower()
        super().clean_fields(exclude)

    def clean(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValidationError("Give either a percent off or an amount off, not both.")
        if self.amount_off is not None and not self.currency:
            raise ValidationError({"currency": "An amount off needs its currency."})
        if self.percent_off is not None:
            self.currency = ""


_ONE_KIND_OF_DISCOUNT = (
    Q(percent_off__isnull=False) & Q(amount_off__isnull=True) & Q(currency="")
) | (Q(percent_off__isnull=True) & Q(amount_off__gt=0) & Q(currency__regex=r"^[a-z]{3}$"))


class PromoCode(DiscountTerms):
    """A code users type at purchase (case-insensitive), as Stripe's promotion codes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(
        max_length=64,
        validators=[
            RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, - and _ only, no spaces.")
        ],
        help_text="What users type; case does not matter (SPRING25 = spring25).",
    )
    description = models.TextField(blank=True, max_length=2000)
    duration = models.CharField(
        "lasts for", max_length=16, choices=Duration.choices, default=Duration.ONCE
    )
    duration_periods = models.PositiveSmallIntegerField(
        "number of payments",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Only for “a number of payments”: the first payment and the renewals after it.",
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(
        "maximum redemptions in all",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Empty: no limit. A refund does not give a use back.",
    )
    max_per_user = models.PositiveIntegerField(
        "maximum redemptions per user",
        null=True,
        blank=True,
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Empty: no limit.",
    )
    first_purchase_only = models.BooleanField(
        default=False, help_text="Only for users who have never paid before."
    )
    plans = models.ManyToManyField(Plan, blank=True, related_name="promo_codes")

    class Meta:
        db_table = "catalog_promo_code"
        ordering = ["code"]
        indexes = [models.Index(fields=["updated_at", "id"], name="promo_updated_at_id_idx")]
        constraints = [
            models.UniqueConstraint(
                Lower("code"),
                name="promo_code_code_unique_ci",
                violation_error_message="A promo code with this code already exists.",
            ),
            models.CheckConstraint(condition=_ONE_KIND_OF_DISCOUNT, name="promo_one_kind"),
            models.CheckConstraint(
                condition=Q(duration="repeating", duration_periods__gte=1)
                | (~Q(duration="repeating") & Q(duration_periods__isnull=True)),
                name="promo_duration_periods",
            ),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_until__isnull=True)
                | Q(valid_until__gt=models.F("valid_from")),
                name="promo_valid_range",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def clean_fields(self, exclude=None) -> None:
        if isinstance(self.code, str):
            self.code = self.code.strip()
        super().clean_fields(exclude)

    def clean(self) -> None:
        super().clean()
        if self.duration == Duration.REPEATING and not self.duration_periods:
            raise ValidationError({"duration_periods": "How many payments does it discount?"})
        if self.duration != Duration.REPEATING:
            self.duration_periods = None
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": "Must be after “valid from”."})


class PersonalDiscount(DiscountTerms):
    """A discount support grants one user: every payment while it is valid."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField("user id", help_text="The user's id (the `sub` of their token).")
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="Payments from this moment on pay full price."
    )
    note = models.TextField(blank=True, max_length=1000, help_text="Why it was granted.")
    plans = models.ManyToManyField(Plan, blank=True, related_name="personal_discounts")

    class Meta:
        db_table = "catalog_personal_discount"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["updated_at", "id"], name="personal_updated_at_id_idx"),
            models.Index(fields=["user_id"], name="personal_user_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=_ONE_KIND_OF_DISCOUNT, name="personal_one_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.discount_display} for {self.user_id}"


class DeletionLog(models.Model):
    """A tombstone per deleted film, plan, promo code or personal discount, so etl can deactivate
    it in billing."""

    class Kind(models.TextChoices):
        FILM = "film", "film"
        PLAN = "plan", "plan"
        PROMO_CODE = "promo_code", "promo code"
        PERSONAL_DISCOUNT = "personal_discount", "personal discount"

    model = models.CharField(max_length=24, choices=Kind.choices)
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
