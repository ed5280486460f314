from __future__ import annotations

from decimal import Decimal

from audit.log import AuditedModelAdmin, ReadOnlyModelAdmin, record
from audit.models import AuditEntry
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from catalog.currencies import format_money, minor_unit_digits, to_major, to_minor
from catalog.discounts import uncharged_prices
from catalog.models import MAX_PRICE_AMOUNT, DeletionLog, Film, PersonalDiscount, Plan, PromoCode


class ActivationActions:
    """The actions "Activate / Deactivate selected" for a ModelAdmin whose model has `active`."""

    actions = ["activate", "deactivate"]

    @admin.action(description="Activate selected %(verbose_name_plural)s")
    def activate(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected %(verbose_name_plural)s")
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, False)

    def _set_active(self, request, queryset, active: bool) -> None:
        # save() per row (not queryset.update) so updated_at moves and etl sees the change.
        changed = 0
        for row in queryset.filter(active=not active):
            row.active = active
            row.save(update_fields=["active", "updated_at"])
            record(
                user=request.user,
                action=AuditEntry.Action.CHANGE,
                target_type=self.model._meta.model_name,
                target_id=row.pk,
                target_repr=str(row),
                customer_id=getattr(row, "user_id", None),
                changes={"active": [not active, active]},
                reason="list action",
            )
            changed += 1
        name = self.model._meta.verbose_name
        self.message_user(
            request, f"{changed} {name}(s) {'activated' if active else 'deactivated'}."
        )


@admin.register(Film)
class FilmAdmin(ActivationActions, AuditedModelAdmin):
    list_display = ["title", "active", "plan_count", "updated_at"]
    list_filter = ["active"]
    search_fields = ["title", "description", "=id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fields = ["id", "title", "description", "active", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(plan_count=Count("plans"))

    @admin.display(description="plans", ordering="plan_count")
    def plan_count(self, film: Film) -> int:
        return film.plan_count


class PlanAdminForm(forms.ModelForm):
    """The price is typed in the currency's units ("9.99" USD, "1000" JPY) and stored in minor
    units; a change of price or currency needs a reason (it is money, and goes to the audit log)."""

    price = forms.DecimalField(
        label="Price",
        min_value=Decimal("0"),
        max_digits=12,
        help_text="In the currency's units: 9.99 for USD, 1000 for JPY (no minor unit).",
    )
    change_reason = forms.CharField(
        label="Reason for the change",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept in the audit log; required when the price or currency changes.",
    )

    class Meta:
        model = Plan
        exclude = ["price_amount"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding and self.instance.price_amount:
            self.initial["price"] = to_major(self.instance.price_amount, self.instance.currency)

    def clean(self):
        cleaned = super().clean()
        self._clean_price(cleaned)
        films = cleaned.get("films")
        all_films = cleaned.get("all_films")
        if all_films and films:
            self.add_error(
                "films", "A plan that covers all films lists no films: clear the list or untick it."
            )
        elif cleaned.get("active") and not all_films and films is not None and not films:
            self.add_error(
                "films",
                "An active plan must cover something: choose films or tick “covers all films”.",
            )
        return cleaned

    def _clean_price(self, cleaned) -> None:
        currency = cleaned.get("currency")
        minor = typed_money(self, "price", cleaned.get("price"), currency, noun="price")
        if minor is None:
            return
        money_changed = not self.instance._state.adding and (
            minor != self.instance.price_amount or currency != self.instance.currency
        )
        if money_changed and not cleaned.get("change_reason", "").strip():
            self.add_error("change_reason", "Say why the price or currency changes.")
        self.instance.price_amount = minor


def typed_money(form, field: str, amount, currency: str | None, *, noun: str) -> int | None:
    """An amount typed in the currency's units ("9.99", "1000" for JPY) as minor units, or None
    with the reason added to the form: too many decimals, not above zero, above one charge."""
    if amount is None or not currency:
        return None
    try:
        minor = to_minor(amount, currency)
    except ValueError:
        digits = minor_unit_digits(currency)
        form.add_error(
            field,
            f"{currency.upper()} {noun}s have {digits or 'no'} decimal place{'s' * (digits != 1)}"
            f"{'' if digits else ' (it has no minor unit)'}.",
        )
        return None
    if minor <= 0:
        form.add_error(field, f"The {noun} must be greater than zero.")
    elif minor > MAX_PRICE_AMOUNT:
        form.add_error(
            field,
            f"The {noun} is larger than one card payment allows "
            f"({format_money(MAX_PRICE_AMOUNT, currency)}).",
        )
    else:
        return minor
    return None


@admin.register(Plan)
class PlanAdmin(ActivationActions, AuditedModelAdmin):
    form = PlanAdminForm
    list_display = ["name", "price", "period", "refund_window_days", "coverage", "active"]
    list_filter = ["active", "currency", "period_unit", "all_films"]
    search_fields = ["name", "description", "=id"]
    filter_horizontal = ["films"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "name", "description", "active"]}),
        (
            "Price and period",
            {
                "fields": [
                    ("price", "currency"),
                    ("period_count", "period_unit"),
                    "refund_window_days",
                ]
            },
        ),
        ("Films", {"fields": ["all_films", "films"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
        ("Why", {"fields": ["change_reason"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(film_count=Count("films"))

    @admin.display(description="price", ordering="price_amount")
    def price(self, plan: Plan) -> str:
        return plan.price_display

    @admin.display(description="period")
    def period(self, plan: Plan) -> str:
        return plan.period_display

    @admin.display(description="films")
    def coverage(self, plan: Plan) -> str:
        return "all films" if plan.all_films else f"{plan.film_count} film(s)"


class DiscountForm(forms.ModelForm):
    """Plans chosen or "all plans", and no plan price left that a card cannot be charged. The
    amount off is typed in its currency's units ("3.00" USD, "300" JPY), stored in minor units."""

    amount_off = forms.DecimalField(
        label="Amount off",
        required=False,
        max_digits=12,
        help_text="In the currency's units: 3.00 for USD, 300 for JPY (no minor unit).",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.amount_off and self.instance.currency:
            self.initial["amount_off"] = to_major(self.instance.amount_off, self.instance.currency)

    def clean(self):
        cleaned = super().clean()
        typed, currency = cleaned.get("amount_off"), (cleaned.get("currency") or "").lower()
        if typed is not None and not currency:
            self.add_error("currency", "An amount off needs its currency.")
        cleaned["amount_off"] = typed_money(self, "amount_off", typed, currency, noun="amount off")
        plans, all_plans = cleaned.get("plans"), cleaned.get("all_plans")
        if all_plans and plans:
            self.add_error("plans", "“Applies to all plans” lists no plans: clear the list.")
            return cleaned
        if not all_plans and plans is not None and not plans:
            self.add_error("plans", "Choose the plans it applies to, or tick “all plans”.")
            return cleaned
        percent_off, amount_off = cleaned.get("percent_off"), cleaned.get("amount_off")
        if (percent_off is None) == (amount_off is None):
            return cleaned  # the model's clean() says so
        currency = (cleaned.get("currency") or "").lower()
        targets = Plan.objects.filter(active=True) if all_plans else (plans or [])
        if amount_off is not None and not all_plans and currency:
            if not any(plan.currency == currency for plan in targets):
                self.add_error(
                    "currency", f"None of the chosen plans is priced in {currency.upper()}."
                )
        for problem in uncharged_prices(
            targets, percent_off=percent_off, amount_off=amount_off, currency=currency
        ):
            self.add_error(None, problem)
        return cleaned


class PromoCodeForm(DiscountForm):
    class Meta:
        model = PromoCode
        fields = "__all__"


class PersonalDiscountForm(DiscountForm):
    class Meta:
        model = PersonalDiscount
        fields = "__all__"


class DiscountAdmin(ActivationActions, AuditedModelAdmin):
    filter_horizontal = ["plans"]

    @admin.display(description="discount")
    def discount(self, obj) -> str:
        return obj.discount_display

    @admin.display(description="plans")
    def coverage(self, obj) -> str:
        return "all plans" if obj.all_plans else ", ".join(p.name for p in obj.plans.all())


@admin.register(PromoCode)
class PromoCodeAdmin(DiscountAdmin):
    form = PromoCodeForm
    list_display = ["code", "discount", "duration_display", "limits", "valid_until", "active",
                    "redemptions_link"]  # fmt: skip
    list_filter = ["active", "duration", "first_purchase_only"]
    search_fields = ["code", "description", "=id"]
    readonly_fields = ["id", "redemptions_link", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "code", "description", "active", "redemptions_link"]}),
        (
            "Discount",
            {
                "fields": [
                    "percent_off",
                    ("amount_off", "currency"),
                    ("duration", "duration_periods"),
                ]
            },
        ),  # fmt: skip
        (
            "Validity and limits",
            {
                "fields": [
                    ("valid_from", "valid_until"),
                    ("max_redemptions", "max_per_user"),
                    "first_purchase_only",
                ]
            },
        ),  # fmt: skip
        ("Plans", {"fields": ["all_plans", "plans"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="lasts for")
    def duration_display(self, promo: PromoCode) -> str:
        if promo.duration == "repeating":
            return f"{promo.duration_periods} payment(s)"
        return promo.get_duration_display()

    @admin.display(description="limits")
    def limits(self, promo: PromoCode) -> str:
        total = promo.max_redemptions or "∞"
        per_user = promo.max_per_user or "∞"
        first = ", first purchase only" if promo.first_purchase_only else ""
        return f"{total} in all, {per_user} per user{first}"

    @admin.display(description="redemptions")
    def redemptions_link(self, promo: PromoCode) -> str:
        if promo.pk is None or promo._state.adding:
            return "—"
        url = reverse("admin:catalog_promocode_redemptions", args=[promo.pk])
        return format_html('<a href="{}">Redemptions</a>', url)

    def get_urls(self):
        custom = [
            path(
                "<uuid:promo_code_id>/redemptions/",
                self.admin_site.admin_view(self.redemptions_view),
                name="catalog_promocode_redemptions",
            )
        ]
        return custom + super().get_urls()

    def redemptions_view(self, request, promo_code_id):
        """The code's redemptions as billing records them (read through its internal API)."""
        from customers import billing  # the admin's one client of billing's internal API

        promo = get_object_or_404(PromoCode, pk=promo_code_id)
        if not self.has_view_permission(request, promo):
            raise PermissionDenied
        answer, error = None, None
        try:
            answer = billing.promo_code_redemptions(promo_code_id=promo.pk)
        except billing.BillingError as exc:
            error = exc
            if exc.code == "promo_code_not_found":
                messages.info(request, "Billing has not received this code yet (etl copies it).")
        items = [
            {**item, "created": parse_datetime(item["created_at"])}
            for item in (answer or {}).get("items", [])
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "promo": promo,
            "answer": answer,
            "items": items,
            "billing_error": error if error and error.code != "promo_code_not_found" else None,
            "discount": promo.discount_display,
            "title": f"Redemptions of {promo.code}",
        }
        return render(request, "catalog/promo_code_redemptions.html", context)


@admin.register(PersonalDiscount)
class PersonalDiscountAdmin(DiscountAdmin):
    form = PersonalDiscountForm
    list_display = ["user_id", "discount", "valid_until", "coverage", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["=user_id", "note", "=id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "user_id", "note", "active"]}),
        ("Discount", {"fields": ["percent_off", ("amount_off", "currency"), "valid_until"]}),
        ("Plans", {"fields": ["all_plans", "plans"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]


@admin.register(DeletionLog)
class DeletionLogAdmin(ReadOnlyModelAdmin):
    """Read-only: what etl propagates to billing as deactivations."""

    list_display = ["deleted_at", "model", "object_id"]
    list_filter = ["model"]
    search_fields = ["=object_id"]
