from __future__ import annotations

from datetime import date, timedelta

from catalog.currencies import CURRENCY_CHOICES
from catalog.models import Plan
from django import forms

GRANULARITIES = [("day", "Day"), ("week", "Week"), ("month", "Month")]
# How far back the dashboard looks by default, per granularity.
DEFAULT_SPAN = {
    "day": timedelta(days=29),
    "week": timedelta(weeks=11),
    "month": timedelta(days=334),
}
PAYMENT_STATUSES = [
    "created", "pending", "processing", "unknown", "succeeded", "failed", "canceled", "expired",
    "partially_refunded", "refunded",
]  # fmt: skip
REFUND_STATUSES = ["pending", "succeeded", "failed", "canceled"]


class DashboardForm(forms.Form):
    granularity = forms.ChoiceField(choices=GRANULARITIES, required=False, initial="day")
    date_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    currency = forms.CharField(required=False, max_length=3, widget=forms.HiddenInput)

    def period(self, today: date) -> tuple[str, date, date]:
        """The granularity and dates asked for, or the defaults (the last 30 days, …)."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        granularity = data.get("granularity") or "day"
        date_to = data.get("date_to") or today
        date_from = data.get("date_from") or date_to - DEFAULT_SPAN[granularity]
        return granularity, date_from, date_to

    def clean(self):
        return _dates_in_order(self, super().clean())


class ExportForm(forms.Form):
    """Filters of a CSV export; every one optional. Dates are UTC and inclusive."""

    date_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    status = forms.ChoiceField(required=False)
    currency = forms.ChoiceField(choices=[("", "any")] + CURRENCY_CHOICES, required=False)
    plan_id = forms.ModelChoiceField(
        label="Plan", queryset=Plan.objects.order_by("name"), required=False, empty_label="any"
    )

    def __init__(self, *args, statuses: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "any")] + [(s, s) for s in statuses]

    def clean(self):
        return _dates_in_order(self, super().clean())

    def billing_params(self) -> dict:
        data = self.cleaned_data
        return {
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
            "status": data.get("status"),
            "currency": data.get("currency"),
            "plan_id": data["plan_id"].pk if data.get("plan_id") else None,
        }


def _dates_in_order(form: forms.Form, cleaned: dict) -> dict:
    if cleaned.get("date_from") and cleaned.get("date_to"):
        if cleaned["date_to"] < cleaned["date_from"]:
            form.add_error("date_to", "The end is before the start.")
    return cleaned
