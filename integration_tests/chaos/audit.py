"""The end of the chaos run: wait until billing holds every payment final, then compare every
payment — first ones and renewals — with what Stripe (localstripe) holds, and count what went
wrong. Each count is measured; none is assumed.

* `double_charges`: payments with two successful charges at Stripe, plus extra first payments of
  one user and plan that Stripe charged and did not fully refund (each user buys the plan once
  here, so two such are one user-plan-period charged twice);
* `over_refunds`: Stripe refunded more than it charged, or billing counts more refunded than paid;
* `stuck`: not final in billing after settling, or with a refund still pending;
* `stripe_mismatches`: any other disagreement `faults.audit.problems` finds (billing paid but
  Stripe not, amounts refunded differing, an expired payment whose intent could still charge);
* `lost`: a payment Stripe holds an intent for (metadata.payment_id) that billing does not know;
* `renewals`: renewal payments billing holds as paid, each checked against Stripe's charge like
  every payment (and the count of renewal payments Stripe charged must be the same);
* `double_renewals`: (subscription, period) pairs Stripe charged more than once — several
  successful charges of the renewal payments of one period, or periods of one subscription that
  Stripe charged (a first payment's or a renewal's) and that overlap.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from integration_tests.chaos.tally import log
from integration_tests.clients.stripe_side import StripePayment
from integration_tests.faults.audit import FINAL, PAID, problems
from integration_tests.faults.tools import Faults

Payment = dict[str, Any]


def billing_payments(faults: Faults) -> list[Payment]:
    payments, offset = [], 0
    while True:
        page = faults.billing_admin.http.get(
            "/internal/v1/payments", params={"limit": 500, "offset": offset}
        ).json()
        payments.extend(page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return payments


def unsettled(payment: Payment) -> bool:
    """Not final, or a refund of it still on its way."""
    return payment["status"] not in FINAL or any(
        refund["status"] == "pending" for refund in payment["refunds"]
    )


def settle(faults: Faults, timeout: float) -> list[Payment]:
    """Wait until billing holds every payment final (or `timeout`); the payments then."""
    deadline = time.monotonic() + timeout
    while True:
        payments = billing_payments(faults)
        open_ = [p for p in payments if unsettled(p)]
        if not open_ or time.monotonic() > deadline:
            return payments
        log(f"settling: {len(open_)} of {len(payments)} payments not final yet")
        time.sleep(3)


def audit(faults: Faults, payments: list[Payment]) -> Counter:
    stripe = faults.stripe.payments()
    counts: Counter = Counter(payments=len(payments))
    charged_by_user_plan: dict[tuple[str, str], int] = defaultdict(int)
    for payment in payments:
        at_stripe = stripe.get(payment["id"]) or StripePayment(payment["id"])
        double = len(at_stripe.succeeded_charges) > 1
        over = at_stripe.refunded > at_stripe.charged or (
            payment["refunded_amount"] > payment["amount"]
        )
        stuck = unsettled(payment)
        counts["double_charges"] += double
        counts["over_refunds"] += over
        counts["stuck"] += stuck
        kept = at_stripe.charged and at_stripe.refunded < at_stripe.charged
        if payment["kind"] == "first" and kept:
            charged_by_user_plan[(payment["user_id"], payment["plan_id"])] += 1
        found = problems(payment, at_stripe)
        if found and not (double or over or stuck):
            counts["stripe_mismatches"] += 1
        if found:
            log(f"payment {payment['id']} ({payment['status']}): {'; '.join(found)}")
    # two kept charges for one user and plan (each user buys once here): a double charge too
    counts["double_charges"] += sum(n - 1 for n in charged_by_user_plan.values() if n > 1)
    known = {p["id"] for p in payments}
    lost = [pid for pid, sp in stripe.items() if pid not in known and sp.intents]
    counts["lost"] = len(lost)
    for pid in lost:
        log(f"Stripe knows payment {pid}, billing does not")
    counts["paid"] = sum(p["status"] in PAID for p in payments)
    count_renewals(payments, stripe, counts)
    log_flagged_subscriptions(faults, {p["user_id"] for p in payments})
    return counts


def log_flagged_subscriptions(faults: Faults, users: set[str]) -> None:
    """Subscriptions billing flagged for a manager (money taken for a period the subscription
    could not have, a first payment charged after its subscription expired...): not a count of
    the summary line, but worth a look whenever there is one."""

    def flagged(user_id: str) -> list[dict[str, Any]]:
        listed = faults.billing_admin.http.get(f"/internal/v1/users/{user_id}/subscriptions")
        listed.raise_for_status()
        return [s for s in listed.json()["items"] if s["needs_attention"]]

    with ThreadPoolExecutor(8) as pool:
        found = [s for subscriptions in pool.map(flagged, users) for s in subscriptions]
    log(f"subscriptions flagged for a manager: {len(found)}")
    for subscription in found:
        log(
            f"subscription {subscription['id']} ({subscription['status']}): "
            f"{subscription['attention_note']}"
        )


def count_renewals(
    payments: list[Payment], stripe: dict[str, StripePayment], counts: Counter
) -> None:
    """`renewals` (billing's paid renewal payments, against Stripe's charged ones) and
    `double_renewals` (from Stripe's charges, grouped by the subscription period they paid)."""
    renewals = [p for p in payments if p["kind"] == "renewal"]
    counts["renewals"] = sum(p["status"] in PAID for p in renewals)
    charged_at_stripe = sum(bool(_charges(stripe, p)) for p in renewals)
    log(
        f"renewals: {len(renewals)} renewal payments, {counts['renewals']} paid in billing, "
        f"{charged_at_stripe} charged at Stripe"
    )
    if charged_at_stripe != counts["renewals"] and not counts["stripe_mismatches"]:
        # Each payment's own check above should have named the difference already.
        counts["stripe_mismatches"] += abs(charged_at_stripe - counts["renewals"])
    charges_by_period: Counter = Counter()
    # subscription -> {period start: period end} of every payment Stripe charged
    charged_periods: dict[str, dict[datetime, datetime]] = defaultdict(dict)
    for payment in payments:
        charges = _charges(stripe, payment)
        if not charges or payment["period_start"] is None:
            continue
        start = datetime.fromisoformat(payment["period_start"])
        end = datetime.fromisoformat(payment["period_end"])
        if payment["kind"] == "renewal":
            charges_by_period[(payment["subscription_id"], start)] += len(charges)
        periods = charged_periods[payment["subscription_id"]]
        periods[start] = max(end, periods.get(start, end))
    doubles = 0
    for (subscription_id, start), n in charges_by_period.items():
        if n > 1:
            doubles += 1
            log(f"subscription {subscription_id}: the period from {start} charged {n} times")
    for subscription_id, periods in charged_periods.items():
        paid_until = None  # the end of the periods charged so far, in order
        for start, end in sorted(periods.items()):
            if paid_until is not None and start < paid_until:
                doubles += 1  # a period that starts before those charged before it end
                log(f"subscription {subscription_id}: the period from {start} was paid already")
            paid_until = end if paid_until is None else max(paid_until, end)
    counts["double_renewals"] = doubles


def _charges(stripe: dict[str, StripePayment], payment: Payment) -> list[dict[str, Any]]:
    at_stripe = stripe.get(payment["id"])
    return at_stripe.succeeded_charges if at_stripe else []
