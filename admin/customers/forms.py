from __future__ import annotations

from decimal import Decimal

from catalog.currencies import format_money, minor_unit_digits, to_minor
from django import forms


class CustomerLookupForm(forms.Form):
    user_id = forms.UUIDField(
        label="User id",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "UUID of the cinema user"}),
    )


class CustomerSearchForm(forms.Form):
    q = forms.CharField(
        label="Find a customer",
        max_length=255,
        widget=forms.TextInput(
            attrs={
                "size": 50,
                "placeholder": "user, payment or refund id, pi_…, cus_…, re_…, promo code",
                "autofocus": True,
            }
        ),
    )


class RefundForm(forms.Form):
    """A refund of one payment. `idempotency_key` is made once when the form is shown, so a
    double submit (or a retry after billing did not answer) refunds once."""

    FULL, PARTIAL = "full", "partial"

    kind = forms.ChoiceField(
        label="Refund",
        choices=[(FULL, "Everything still refundable"), (PARTIAL, "Part of it")],
        widget=forms.RadioSelect,
        initial=FULL,
    )
    amount = forms.DecimalField(label="Amount (partial refund)", required=False)  # see __init__
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=True
    )
    end_subscription = forms.BooleanField(
        label="End the subscription now (access stops at once)", required=False
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=255)
    # What was refundable when the form was shown: a full refund asks for exactly this, so a
    # double submit sends the same request body (and billing answers it once).
    refundable = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    user_id = forms.UUIDField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, currency: str, limit: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        # The most this manager may refund (minor units); None = no limit (see views.refund_limit).
        self.limit = limit
        digits = minor_unit_digits(currency)
        # Rebuilt for the payment's currency: 2 decimals for USD, none for JPY.
        self.fields["amount"] = forms.DecimalField(
            label="Amount (partial refund)",
            required=False,
            min_value=Decimal("0"),
            decimal_places=digits,
            help_text=f"In {currency.upper()}, e.g. {'4.50' if digits == 2 else '450'}.",
        )

    def clean(self):
        cleaned = super().clean()
        refundable = cleaned.get("refundable")
        if refundable is None:
            return cleaned
        if refundable <= 0:
            raise forms.ValidationError("Nothing is left to refund on this payment.")
        if cleaned.get("kind") == self.PARTIAL:
            amount = cleaned.get("amount")
            if amount is None:
                self.add_error("amount", "Enter the amount to refund.")
                return cleaned
            try:
                minor = to_minor(amount, self.currency)
            except ValueError as exc:
                self.add_error("amount", str(exc))
                return cleaned
            if minor <= 0:
                self.add_error("amount", "The amount must be greater than zero.")
            elif minor > refundable:
                self.add_error(
                    "amount",
                    f"At most {format_money(refundable, self.currency)} can be refunded.",
                )
            cleaned["amount_minor"] = minor
        else:
            cleaned["amount_minor"] = refundable
        minor = cleaned.get("amount_minor")
        if self.limit is not None and minor is not None and minor > self.limit:
            self.add_error(
                None,
                f"Your role may refund at most {format_money(self.limit, self.currency)} "
                f"of a payment in {self.currency.upper()}: ask an administrator."
                if self.limit
                else f"Your role may not refund {self.currency.upper()} payments: "
                "ask an administrator.",
            )
        return cleaned


class SubscriptionActionForm(forms.Form):
    """A manager's "retry the renewal now" or "end the subscription" — always with a reason.
    `idempotency_key` is made once when the form is shown (as for a refund), so a double submit
    or a retry after billing did not answer acts once."""

    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=True
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=255)
    user_id = forms.UUIDField(widget=forms.HiddenInput)
