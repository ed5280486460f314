"""The two promises, checked for one payment: billing's view against Stripe's.

`problems(billing_payment, stripe_payment)` lists every way they disagree or money went wrong; an
empty list means: at most one successful charge, refunds never above the charge, and billing's
state equal to Stripe's. Used by the fault tests and the chaos run."""

from __future__ import annotations

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
