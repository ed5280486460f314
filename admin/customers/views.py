"""Customers pages of the admin: a user's payments, subscriptions (with their renewal state) and
refunds, read through billing's internal API (never billing's database), a refund form for one
payment, and a subscription's "retry the renewal now" and "end it now"."""

from __future__ import annotations

import logging
import uuid

from audit.log import record
from audit.models import AuditEntry
from catalog.currencies import format_money, to_minor
from catalog.models import Plan
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from customers import billing, timeline
from customers.forms import (
    CustomerLookupForm,
    CustomerSearchForm,
    RefundForm,
    SubscriptionActionForm,
)

log = logging.getLogger("admin.customers")

REFUNDABLE_STATUSES = {"succeeded", "partially_refunded"}
# Payments a manager looks at when "it did not work": unpaid after a decline, or still unclear.
FAILED_STATUSES = {"failed", "canceled", "expired", "unknown"}
RECENT_PAYMENTS = 10
# Where billing may retry a renewal (an open one is also needed) or end a subscription
# (billing's state machine: docs/design.md); billing has the last word either way.
RETRYABLE_STATUSES = {"active", "past_due"}
ENDABLE_STATUSES = {"active", "past_due", "suspended", "canceled"}


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
        "detail_url": reverse("admin:customers_payment", args=[payment["id"]]),
        "failed": payment["status"] in FAILED_STATUSES
        or bool(payment.get("failure_code") and payment["status"] not in REFUNDABLE_STATUSES),
    }


def _with_customer(payment: dict, names: dict[str, str]) -> dict:
    return {
        **_payment_view(payment, names, payment["user_id"]),
        "customer_url": _customer_url(payment["user_id"]),
    }


def _customer_url(user_id) -> str:
    return reverse("admin:customers") + f"?user_id={user_id}"


def customer_lookup(request: HttpRequest) -> HttpResponse:
    """Find a customer from what the manager has in hand (`q`), or show one (`user_id`)."""
    _require(request, "customers.view_customer_billing")
    context = {
        **admin.site.each_context(request),
        "title": "Customers",
        "search_form": CustomerSearchForm(request.GET if "q" in request.GET else None),
        "form": CustomerLookupForm(request.GET if "user_id" in request.GET else None),
        "looked_up": False,
    }
    search = context["search_form"]
    if search.is_bound and search.is_valid():
        query = search.cleaned_data["q"]
        try:
            matches = billing.search_customers(query=query)
        except billing.BillingError as exc:
            context["billing_error"] = exc
            return render(request, "customers/lookup.html", context)
        users = list(dict.fromkeys(m["user_id"] for m in matches))
        if len(users) == 1:
            return redirect(_customer_url(users[0]))
        context.update(
            searched=query, matches=[{**m, "url": _customer_url(m["user_id"])} for m in matches]
        )
        return render(request, "customers/lookup.html", context)

    form = context["form"]
    if not form.is_bound:
        # Nothing asked yet: the newest payments and the newest failed ones, of every customer.
        try:
            newest = billing.recent_payments(limit=RECENT_PAYMENTS)
            failed = billing.recent_payments(failed=True, limit=RECENT_PAYMENTS)
        except billing.BillingError as exc:
            context["billing_error"] = exc
        else:
            names = _plan_names([p.get("plan_id") for p in newest + failed])
            context.update(
                everyone=True,
                recent_all=[_with_customer(p, names) for p in newest],
                failed_all=[_with_customer(p, names) for p in failed],
            )
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
            shown = [_payment_view(p, names, user_id) for p in payments]
            context.update(
                looked_up=True,
                user_id=user_id,
                title=f"Customer {user_id}",
                timeline_url=reverse("admin:customers_timeline", args=[user_id]),
                payments=shown[:RECENT_PAYMENTS],
                more_payments=max(0, len(shown) - RECENT_PAYMENTS),
                failed_payments=[p for p in shown if p["failed"]],
                subscriptions=[
                    _subscription_view(s, names, user_id, request.user) for s in subscriptions
                ],
                refunds=[
                    {
                        **r,
                        "amount_display": format_money(r["amount"], r["currency"]),
                        "created": _when(r.get("created_at")),
                        "detail_url": reverse("admin:customers_payment", args=[r["payment_id"]]),
                    }
                    for r in refunds
                ],
            )
    return render(request, "customers/lookup.html", context)


def _subscription_view(subscription: dict, names: dict[str, str], user_id, user) -> dict:
    """A subscription with its renewal state as dates, and the actions this manager may take."""
    renewal = subscription.get("renewal") or {}
    status = subscription["status"]
    may_act = user.has_perm("customers.manage_subscription")

    def action_url(action: str) -> str:
        url = reverse("admin:customers_subscription", args=[subscription["id"], action])
        return f"{url}?user_id={user_id}"

    return {
        **subscription,
        "plan_name": names.get(str(subscription.get("plan_id")), subscription.get("plan_id")),
        "period_start": _when(subscription.get("current_period_start")),
        "period_end": _when(subscription.get("current_period_end")),
        "created": _when(subscription.get("created_at")),
        "next_renewal": _when(renewal.get("next_renewal_at")),
        "next_retry": _when(renewal.get("next_retry_at")),
        "renewal_payment_status": renewal.get("payment_status"),
        "renewal_attempts": renewal.get("attempts", 0),
        "past_due": _when(subscription.get("past_due_since")),
        "grace": _when(subscription.get("grace_until")),
        "last_decline": " — ".join(
            filter(
                None,
                [subscription.get("last_decline_code"), subscription.get("last_decline_message")],
            )
        ),
        "retry_url": (
            action_url("retry")
            if may_act and status in RETRYABLE_STATUSES and renewal.get("payment_id")
            else None
        ),
        "end_url": action_url("end") if may_act and status in ENDABLE_STATUSES else None,
    }


# action -> (billing's call, the audit log's action, the button, what the manager is told)
SUBSCRIPTION_ACTIONS = {
    "retry": (
        billing.retry_renewal,
        AuditEntry.Action.RETRY,
        "Retry renewal now",
        "The renewal will be charged at billing's next pass.",
    ),
    "end": (
        billing.end_subscription,
        AuditEntry.Action.END,
        "End subscription",
        "The subscription has ended: no access, no renewal.",
    ),
}


def subscription_action(
    request: HttpRequest, subscription_id: uuid.UUID, action: str
) -> HttpResponse:
    """Retry a subscription's renewal now, or end it now, through billing, with a reason."""
    _require(request, "customers.manage_subscription")
    if action not in SUBSCRIPTION_ACTIONS:
        raise Http404("No such action on a subscription.")
    call, audit_action, label, done = SUBSCRIPTION_ACTIONS[action]
    context = {**admin.site.each_context(request), "title": label, "action_label": label}
    lookup = CustomerLookupForm(
        {"user_id": request.POST.get("user_id") or request.GET.get("user_id", "")}
    )
    if not lookup.is_valid():
        raise Http404("Open this page from the customer's page (user_id is missing).")
    user_id = lookup.cleaned_data["user_id"]
    context.update(user_id=user_id, customer_url=_customer_url(user_id))
    try:
        subscriptions = billing.user_subscriptions(user_id=user_id)
    except billing.BillingError as exc:
        context["billing_error"] = exc
        status = 502 if isinstance(exc, billing.BillingUnavailable) else 200
        return render(request, "customers/subscription_action.html", context, status=status)
    found = [s for s in subscriptions if s["id"] == str(subscription_id)]
    if not found:
        raise Http404("This customer has no such subscription.")
    names = _plan_names([found[0].get("plan_id")])
    subscription = _subscription_view(found[0], names, user_id, request.user)
    context["subscription"] = subscription

    if request.method == "POST":
        form = SubscriptionActionForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            key = data["idempotency_key"]
            try:
                answer = call(subscription_id=subscription_id, idempotency_key=key)
            except billing.BillingUnavailable as exc:
                # Outcome unknown: keep the same key, so submitting again acts at most once.
                context.update(billing_error=exc, retry_is_safe=True)
            except billing.BillingError as exc:
                # A definite "no": a next attempt is a new request with a new key.
                context["billing_error"] = exc
                form = _action_form(user_id, reason=data["reason"])
            else:
                _record_subscription_action(
                    request, audit_action, subscription, answer, key=key, reason=data["reason"]
                )
                messages.success(request, done)
                return redirect(_customer_url(user_id))
    else:
        form = _action_form(user_id)
    context["form"] = form
    return render(request, "customers/subscription_action.html", context)


def _action_form(user_id, *, reason: str = "") -> SubscriptionActionForm:
    """A subscription action's form with a fresh idempotency key."""
    return SubscriptionActionForm(
        initial={"user_id": user_id, "reason": reason, "idempotency_key": str(uuid.uuid4())}
    )


def _record_subscription_action(
    request: HttpRequest, action: str, subscription: dict, answer: dict, *, key: str, reason: str
) -> None:
    """One audit entry per action: a replayed answer (a double submit, the same key) adds none."""
    entries = AuditEntry.objects.filter(
        action=action, target_type="subscription", target_id=subscription["id"]
    )
    if entries.filter(changes__idempotency_key=key).exists():
        return
    record(
        user=request.user,
        action=action,
        target_type="subscription",
        target_id=subscription["id"],
        target_repr=f"subscription to {subscription['plan_name']}",
        customer_id=subscription.get("user_id"),
        changes={
            "status": [subscription["status"], answer.get("status")],
            "next_retry_at": (answer.get("renewal") or {}).get("next_retry_at"),
            "idempotency_key": key,
        },
        reason=reason,
    )
    log.info(
        "subscription action requested",
        extra={
            "action": action,
            "subscription_id": subscription["id"],
            "status": answer.get("status"),
            "manager": request.user.get_username(),
        },
    )


def customer_timeline(request: HttpRequest, user_id: uuid.UUID) -> HttpResponse:
    """One customer's history in order: billing's events and the managers' actions."""
    _require(request, "customers.view_customer_billing")
    context = {
        **admin.site.each_context(request),
        "title": f"Timeline of {user_id}",
        "user_id": user_id,
        "customer_url": _customer_url(user_id),
    }
    try:
        context["items"] = timeline.items(user_id=user_id)
    except billing.BillingError as exc:
        context["billing_error"] = exc
    return render(request, "customers/timeline.html", context)


def payment_detail(request: HttpRequest, payment_id: uuid.UUID) -> HttpResponse:
    """One payment as billing has it: its refunds and every ledger row it caused."""
    _require(request, "customers.view_customer_billing")
    context = {**admin.site.each_context(request), "title": f"Payment {payment_id}"}
    try:
        payment = billing.get_payment(payment_id=payment_id)
    except billing.BillingError as exc:
        context["billing_error"] = exc
        status = 502 if isinstance(exc, billing.BillingUnavailable) else 404
        return render(request, "customers/payment.html", context, status=status)
    user_id = payment.get("user_id")
    names = _plan_names([payment.get("plan_id")])
    currency = payment["currency"]
    context.update(
        payment=_payment_view(payment, names, user_id),
        user_id=user_id,
        customer_url=_customer_url(user_id),
        timeline_url=reverse("admin:customers_timeline", args=[user_id]),
        refunds=[
            {**r, "amount_display": format_money(r["amount"], r["currency"])}
            for r in payment.get("refunds", [])
        ],
        ledger=[
            {**e, "amount_display": format_money(e["amount"], e.get("currency", currency))}
            for e in payment.get("ledger", [])
        ],
        actions=AuditEntry.objects.filter(target_type="payment", target_id=str(payment_id)),
    )
    return render(request, "customers/payment.html", context)


def refund_limit(user, currency: str) -> int | None:
    """The most this manager may refund of one payment, in minor units; None = no limit."""
    if user.has_perm("customers.refund_any_amount"):
        return None
    limit = settings.SUPPORT_REFUND_LIMITS.get(currency.lower())
    return 0 if limit is None else to_minor(limit, currency)


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

    limit = refund_limit(request.user, currency)
    if request.method == "POST":
        form = RefundForm(request.POST, currency=currency, limit=limit)
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
                    limit=limit,
                )
            else:
                record(
                    user=request.user,
                    action=AuditEntry.Action.REFUND,
                    target_type="payment",
                    target_id=payment_id,
                    target_repr=f"payment of {format_money(payment['amount'], currency)}",
                    customer_id=user_id,
                    changes={
                        "refund_id": refund.get("id"),
                        "amount": refund.get("amount"),
                        "currency": refund.get("currency"),
                        "amount_display": format_money(refund["amount"], refund["currency"]),
                        "end_subscription": data["end_subscription"],
                        "status": refund.get("status"),
                    },
                    reason=data["reason"],
                )
                log.info(
                    "refund requested",
                    extra={
                        "action": "refund",
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
                return redirect(_customer_url(user_id) if user_id else reverse("admin:customers"))
    else:
        form = RefundForm(
            initial={
                "kind": RefundForm.FULL,
                "idempotency_key": str(uuid.uuid4()),
                "refundable": refundable,
                "user_id": user_id,
            },
            currency=currency,
            limit=limit,
        )

    context.update(
        form=form,
        payment=payment,
        user_id=user_id,
        amount_display=format_money(payment["amount"], currency),
        refundable_display=format_money(refundable, currency),
        refundable=refundable,
        limit_display=format_money(limit, currency) if limit is not None else None,
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
