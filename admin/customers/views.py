"""Customers pages of the admin: a user's payments, subscriptions and refunds, read through
billing's internal API (never billing's database), and a refund form for one payment."""

from __future__ import annotations

import logging
import uuid

from catalog.currencies import format_money
from catalog.models import Plan
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from customers import billing
from customers.forms import CustomerLookupForm, RefundForm

log = logging.getLogger("admin.customers")

REFUNDABLE_STATUSES = {"succeeded", "partially_refunded"}


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _when(value: str | None):
    return parse_datetime(value) if value else None


def _plan_names(plan_ids) -> dict[str, str]:
    """Plan names from the admin's own catalog (billing's rows carry only ids)."""
    ids = {pid for pid in plan_ids if pid}
    return {str(pk): name for pk, name in Plan.objects.filter(pk__in=ids).values_list("pk", "name")}


def _payment_view(payment: dict, plan_names: dict[str, str], user_id) -> dict:
    refundable = max(0, payment["amount"] - payment.get("refunded_amount", 0))
    can_refund = payment["status"] in REFUNDABLE_STATUSES and refundable > 0
    return {
        **payment,
        "plan_name": plan_names.get(str(payment.get("plan_id")), payment.get("plan_id")),
        "amount_display": format_money(payment["amount"], payment["currency"]),
        "refunded_display": format_money(payment.get("refunded_amount", 0), payment["currency"]),
        "refundable": refundable,
        "created": _when(payment.get("created_at")),
        "refund_url": (
            reverse("admin:customers_refund", args=[payment["id"]]) + f"?user_id={user_id}"
            if can_refund
            else None
        ),
    }


def customer_lookup(request: HttpRequest) -> HttpResponse:
    """Enter a user id; see what billing knows about that user."""
    _require(request, "customers.view_customer_billing")
    context = {
        **admin.site.each_context(request),
        "title": "Customer payments, subscriptions and refunds",
        "form": CustomerLookupForm(request.GET or None),
        "looked_up": False,
    }
    form = context["form"]
    if form.is_bound and form.is_valid():
        user_id = form.cleaned_data["user_id"]
        try:
            payments = billing.user_payments(user_id=user_id)
            subscriptions = billing.user_subscriptions(user_id=user_id)
            refunds = billing.user_refunds(user_id=user_id)
        except billing.BillingError as exc:
            context["billing_error"] = exc
        else:
            names = _plan_names(
                [p.get("plan_id") for p in payments] + [s.get("plan_id") for s in subscriptions]
            )
            context.update(
                looked_up=True,
                user_id=user_id,
                payments=[_payment_view(p, names, user_id) for p in payments],
                subscriptions=[
                    {
                        **s,
                        "plan_name": names.get(str(s.get("plan_id")), s.get("plan_id")),
                        "period_start": _when(s.get("current_period_start")),
                        "period_end": _when(s.get("current_period_end")),
                        "created": _when(s.get("created_at")),
                    }
                    for s in subscriptions
                ],
                refunds=[
                    {
                        **r,
                        "amount_display": format_money(r["amount"], r["currency"]),
                        "created": _when(r.get("created_at")),
                    }
                    for r in refunds
                ],
            )
    return render(request, "customers/lookup.html", context)


def refund_payment(request: HttpRequest, payment_id: uuid.UUID) -> HttpResponse:
    """Refund all or part of a payment, optionally ending its subscription."""
    _require(request, "customers.issue_refund")
    context = {**admin.site.each_context(request), "title": "Refund a payment"}
    try:
        payment = billing.get_payment(payment_id=payment_id)
    except billing.BillingError as exc:
        context["billing_error"] = exc
        return render(
            request,
            "customers/refund.html",
            context,
            status=502 if isinstance(exc, billing.BillingUnavailable) else 200,
        )

    user_id = payment.get("user_id") or request.GET.get("user_id") or request.POST.get("user_id")
    refundable = max(0, payment["amount"] - payment.get("refunded_amount", 0))
    currency = payment["currency"]

    if request.method == "POST":
        form = RefundForm(request.POST, currency=currency)
        if form.is_valid():
            data = form.cleaned_data
            try:
                refund = billing.refund_payment(
                    payment_id=payment_id,
                    amount=data["amount_minor"],
                    reason=data["reason"],
                    end_subscription=data["end_subscription"],
                    idempotency_key=data["idempotency_key"],
                )
            except billing.BillingUnavailable as exc:
                # Outcome unknown: keep the same key, so submitting again cannot refund twice.
                context["billing_error"] = exc
                context["retry_is_safe"] = True
            except billing.BillingError as exc:
                # A definite "no": the next attempt is a new request with a new key.
                context["billing_error"] = exc
                form = RefundForm(
                    initial={**_form_initial(form.cleaned_data), "refundable": refundable},
                    currency=currency,
                )
            else:
                log.info(
                    "refund requested",
                    extra={
                        "event": "refund",
                        "payment_id": str(payment_id),
                        "refund_id": refund.get("id"),
                        "amount": refund.get("amount"),
                        "manager": request.user.get_username(),
                    },
                )
                messages.success(
                    request,
                    f"Refund of {format_money(refund['amount'], refund['currency'])} "
                    f"requested ({refund.get('status', 'pending')}).",
                )
                back = reverse("admin:customers")
                return redirect(f"{back}?user_id={user_id}" if user_id else back)
    else:
        form = RefundForm(
            initial={
                "kind": RefundForm.FULL,
                "idempotency_key": str(uuid.uuid4()),
                "refundable": refundable,
                "user_id": user_id,
            },
            currency=currency,
        )

    context.update(
        form=form,
        payment=payment,
        user_id=user_id,
        amount_display=format_money(payment["amount"], currency),
        refundable_display=format_money(refundable, currency),
        refundable=refundable,
    )
    return render(request, "customers/refund.html", context)


def _form_initial(cleaned: dict) -> dict:
    """The manager's entries, with a fresh idempotency key for a new attempt."""
    return {
        "kind": cleaned.get("kind"),
        "amount": cleaned.get("amount"),
        "reason": cleaned.get("reason"),
        "end_subscription": cleaned.get("end_subscription"),
        "user_id": cleaned.get("user_id"),
        "idempotency_key": str(uuid.uuid4()),
    }
