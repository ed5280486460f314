"""Stripe's objects checked against ours before anything is applied.

Every snapshot pay_api applies was fetched from Stripe with the secret key (a webhook's body is
only a hint), but an object can still be the wrong one: an intent whose amount was changed at
Stripe, one made for another customer or payment, a refund of another intent. Such an object
changes nothing; it is logged and flagged for a manager (flags/).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from pay_api.flags.service import raise_flag
from pay_api.gateway import IntentState, RefundState
from pay_api.payments.models import Customer, Payment


def _matches(
    session: Session,
    *,
    payment: Payment,
    stripe_object_id: str,
    ours: dict[str, Any],
    stripes: dict[str, Any],
    source: str,
) -> bool:
    """True when every field agrees; otherwise a flag names the fields that differ."""
    differences = {
        field: {"ours": ours[field], "stripe": stripes[field]}
        for field in ours
        if ours[field] != stripes[field]
    }
    if differences:
        raise_flag(
            session,
            kind="object_mismatch",
            stripe_object_id=stripe_object_id,
            payment_id=payment.id,
            source=source,
            details=differences,
        )
    return not differences


def intent_matches(session: Session, payment: Payment, intent: IntentState, *, source: str) -> bool:
    """True when the intent is our payment's: id, amount, currency, customer, metadata."""
    customer = session.get(Customer, payment.user_id)
    return _matches(
        session,
        payment=payment,
        stripe_object_id=intent.id,
        ours={
            "id": payment.stripe_payment_intent_id,
            "amount": payment.amount,
            "currency": payment.currency.lower(),
            "customer": customer.stripe_customer_id if customer else None,
            "metadata.payment_id": str(payment.id),
        },
        stripes={
            "id": intent.id,
            "amount": intent.amount,
            "currency": intent.currency,
            "customer": intent.customer_id,
            "metadata.payment_id": intent.payment_id,
        },
        source=source,
    )


def refund_matches(
    session: Session, payment: Payment, refund: Any, refund_state: RefundState, *, source: str
) -> bool:
    """True when Stripe's refund is ours: same intent, amount, currency and metadata.refund_id."""
    return _matches(
        session,
        payment=payment,
        stripe_object_id=refund_state.id,
        ours={
            "payment_intent": payment.stripe_payment_intent_id,
            "amount": refund.amount,
            "currency": refund.currency.lower(),
            "metadata.refund_id": str(refund.id),
        },
        stripes={
            "payment_intent": refund_state.payment_intent_id,
            "amount": refund_state.amount,
            "currency": refund_state.currency or refund.currency.lower(),
            "metadata.refund_id": refund_state.refund_id,
        },
        source=source,
    )
