"""The chaos run's renewal counts come from what Stripe holds, not from billing's word: a period
charged twice is counted whether the two charges sit on one renewal payment, on two payments of
one period, or on payments whose periods overlap. (No stack: the audit's arithmetic alone, on
payments as billing's admin API lists them and charges as localstripe lists them.)"""

from __future__ import annotations

import uuid
from collections import Counter

from integration_tests.chaos.audit import count_renewals
from integration_tests.clients.stripe_side import StripePayment

MONTH_1 = ("2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00")
MONTH_2 = ("2027-02-01T00:00:00+00:00", "2027-03-01T00:00:00+00:00")
MONTH_2_LATE = ("2027-02-15T00:00:00+00:00", "2027-03-15T00:00:00+00:00")


def payment(subscription: str, kind: str, period: tuple[str, str], status: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "subscription_id": subscription,
        "kind": kind,
        "status": status,
        "period_start": period[0],
        "period_end": period[1],
    }


def charged(*payments: dict, times: int = 1) -> dict[str, StripePayment]:
    return {
        p["id"]: StripePayment(
            p["id"],
            charges=[{"status": "succeeded", "amount": 999}] * times + [{"status": "failed"}],
        )
        for p in payments
    }


def counted(payments: list[dict], stripe: dict[str, StripePayment]) -> Counter:
    counts: Counter = Counter()
    count_renewals(payments, stripe, counts)
    return counts


def test_renewals_once_each_are_counted_and_none_is_double():
    first = payment("s1", "first", MONTH_1, "succeeded")
    renewal = payment("s1", "renewal", MONTH_2, "refunded")  # refunded later: it was paid
    declined = payment("s2", "renewal", MONTH_2, "expired")  # never charged
    counts = counted([first, renewal, declined], charged(first, renewal))
    assert (counts["renewals"], counts["double_renewals"]) == (1, 0)
    assert counts["stripe_mismatches"] == 0


def test_a_renewal_payment_charged_twice_is_a_double_renewal():
    renewal = payment("s1", "renewal", MONTH_2, "succeeded")
    assert counted([renewal], charged(renewal, times=2))["double_renewals"] == 1


def test_two_payments_charged_for_one_period_are_a_double_renewal():
    one = payment("s1", "renewal", MONTH_2, "succeeded")
    other = payment("s1", "renewal", MONTH_2, "succeeded")
    assert counted([one, other], charged(one, other))["double_renewals"] == 1


def test_a_renewal_overlapping_a_charged_period_is_a_double_renewal():
    first = payment("s1", "first", MONTH_1, "succeeded")
    renewal = payment("s1", "renewal", MONTH_2, "succeeded")
    overlapping = payment("s1", "renewal", MONTH_2_LATE, "succeeded")
    stripe = charged(first, renewal, overlapping)
    assert counted([first, renewal, overlapping], stripe)["double_renewals"] == 1


def test_billing_saying_paid_where_stripe_charged_nothing_is_a_mismatch():
    renewal = payment("s1", "renewal", MONTH_2, "succeeded")
    counts = counted([renewal], {})
    assert counts["renewals"] == 1 and counts["stripe_mismatches"] == 1
