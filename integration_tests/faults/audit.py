"""The two promises, checked for one payment: billing's view against Stripe's.

`problems(billing_payment, stripe_payment)` lists every way they disagree or money went wrong; an
empty list means: at most one successful charge, refunds never above the charge, and billing's
state equal to Stripe's. Used by the fault tests and the chaos run."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from integration_tests.clients.stripe_side import StripePayment

FINAL = {"succeeded", "partially_refunded", "refunded", "failed", "canceled", "expired"}
PAID = {"succeeded", "partially_refunded", "refunded"}
# an intent in any of these states can still take money later (with a new card, or once confirmed)
CHARGEABLE_INTENT = {
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
}


def double_charged(stripe: StripePayment) -> bool:
    return len(stripe.succeeded_charges) > 1


def over_refunded(stripe: StripePayment) -> bool:
    return stripe.refunded > stripe.charged


def can_still_charge(intent: dict[str, Any], billing: dict[str, Any]) -> bool:
    """Whether anyone could still take money through this intent.

    An intent created but never confirmed and never stored by pay_api (its creation answer was
    lost: localstripe ignores idempotency keys, so the retry made a second one) cannot be: only
    pay_api confirms intents, by the id it stored, and its client secret was never shown."""
    if intent["status"] not in CHARGEABLE_INTENT:
        return False
    orphan = intent["id"] != billing.get("stripe_payment_intent_id")
    return not (orphan and intent["status"] == "requires_confirmation")


def problems(billing: dict[str, Any], stripe: StripePayment) -> list[str]:
    found = []
    status = billing["status"]
    if double_charged(stripe):
        found.append(f"{len(stripe.succeeded_charges)} successful charges at Stripe")
    if over_refunded(stripe):
        found.append(f"Stripe refunded {stripe.refunded} of {stripe.charged}")
    if status not in FINAL:
        found.append(f"not final in billing: {status}")
    if status in PAID:
        if stripe.charged != billing["amount"]:
            found.append(f"billing says {status}, Stripe charged {stripe.charged}")
        if stripe.refunded != billing["refunded_amount"]:
            found.append(
                f"billing refunded {billing['refunded_amount']}, Stripe refunded {stripe.refunded}"
            )
        expected = (
            "refunded"
            if stripe.refunded >= stripe.charged > 0
            else "partially_refunded"
            if stripe.refunded
            else "succeeded"
        )
        if status != expected:
            found.append(f"billing says {status}, Stripe's money says {expected}")
    elif status in FINAL:
        if stripe.charged:
            found.append(f"billing says {status}, but Stripe charged {stripe.charged}")
        live = [i["id"] for i in stripe.intents if can_still_charge(i, billing)]
        if live:
            found.append(f"billing says {status}, but intents can still be charged: {live}")
    return found


def renewal_problems(
    subscription: dict[str, Any],
    payments: list[dict[str, Any]],
    stripe: dict[str, StripePayment],
    customer_charges: list[dict[str, Any]],
) -> list[str]:
    """The promises for one subscription and its renewals, both sides; empty when they hold.

    `payments`: billing's views of the subscription's payments (the admin's, with kind and
    period); `stripe`: what Stripe holds for each (by payment id); `customer_charges`: every charge
    Stripe made on the user's customer, whatever its metadata. Each payment passes `problems`;
    per period at most one renewal payment, one PaymentIntent and one successful charge; the paid
    periods follow each other without a gap or an overlap and the subscription holds the last one;
    nothing is flagged for a manager; Stripe charged the customer exactly what these payments say."""
    found = []
    for payment in payments:
        at_stripe = stripe.get(payment["id"], StripePayment(payment["id"]))
        found += [f"payment {payment['id']}: {p}" for p in problems(payment, at_stripe)]
    renewals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payment in payments:
        if payment["kind"] == "renewal":
            renewals[payment["period_start"]].append(payment)
    for start, of_period in renewals.items():
        if len(of_period) > 1:
            found.append(f"{len(of_period)} renewal payments for the period from {start}")
        intents = [i for p in of_period for i in stripe.get(p["id"], StripePayment("")).intents]
        if len(intents) > 1:
            found.append(f"{len(intents)} PaymentIntents for the period from {start}")
        charges = [
            c for p in of_period for c in stripe.get(p["id"], StripePayment("")).succeeded_charges
        ]
        if len(charges) > 1:
            found.append(f"{len(charges)} successful charges for the period from {start}")
    paid = sorted(
        (p for p in payments if p["status"] in PAID and p["period_start"]),
        key=lambda p: p["period_start"],
    )
    for before, after in zip(paid, paid[1:], strict=False):
        if _instant(after["period_start"]) != _instant(before["period_end"]):
            found.append(
                f"paid periods do not follow: {before['period_end']} then {after['period_start']}"
            )
    if paid:
        held = (subscription["current_period_start"], subscription["current_period_end"])
        last = (paid[-1]["period_start"], paid[-1]["period_end"])
        if tuple(map(_instant, held)) != tuple(map(_instant, last)):
            found.append(f"the subscription holds {held}, the last paid period is {last}")
    if subscription.get("needs_attention"):
        found.append(f"flagged for a manager: {subscription.get('attention_note')}")
    ours = sum(len(stripe.get(p["id"], StripePayment("")).succeeded_charges) for p in payments)
    theirs = [c for c in customer_charges if c["status"] == "succeeded"]
    if len(theirs) != ours:
        found.append(f"Stripe charged the customer {len(theirs)} times, these payments say {ours}")
    return found


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
