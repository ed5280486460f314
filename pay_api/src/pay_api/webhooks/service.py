"""Stripe events are hints: inbox row (unique event id), then the object named by the event is
fetched from Stripe with our secret key, checked against ours and applied — all in ONE
transaction with the outbox rows it writes.

What the event's body says about amounts and statuses is never applied: a correctly signed event
(a leaked webhook secret, a misconfigured proxy) can only make pay_api look at Stripe sooner. A
Stripe object that does not match our payment (amount, currency, customer, metadata.payment_id;
a refund's intent, amount, currency, metadata.refund_id) changes nothing and is flagged for a
manager (flags/). If Stripe cannot be reached the transaction rolls back (no inbox row) and the
503 makes Stripe deliver the event again.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from pay_api.db import Database
from pay_api.errors import GatewayRejected
from pay_api.flags.service import raise_flag
from pay_api.gateway import Gateway
from pay_api.payments import state
from pay_api.payments.models import Payment
from pay_api.refunds import service as refunds
from pay_api.webhooks.models import StripeEvent
from pay_api.webhooks.schemas import StripeEventIn

log = logging.getLogger(__name__)

PAYMENT_INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
    }
)
# Events about a charge: the intent it names is refreshed (its latest charge carries the total).
CHARGE_EVENTS = frozenset({"charge.succeeded", "charge.failed", "charge.refunded"})
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)


def handle_event(*, db: Database, gateway: Gateway, event: StripeEventIn) -> bool:
    """Apply a verified event once; False when it is a duplicate."""
    with db.transaction() as session:
        first_time = session.execute(
            insert(StripeEvent)
            .values(id=event.id, type=event.type)
            .on_conflict_do_nothing(index_elements=[StripeEvent.id])
            .returning(StripeEvent.id)
        ).first()
        if first_time is None:
            log.info("duplicate stripe event ignored", extra={"stripe_event": event.id})
            return False
        source = f"webhook:{event.type}"
        obj = event.data.object
        if event.type in PAYMENT_INTENT_EVENTS:
            intent_id: str | None = obj.id
        elif event.type in CHARGE_EVENTS:
            intent_id = obj.payment_intent
        elif event.type in REFUND_EVENTS:
            intent_id = _apply_refund(session, gateway, obj.id, source=source)
        else:
            log.info("stripe event type not handled", extra={"event_type": event.type})
            return True
        if intent_id:
            _refresh_payment(session, gateway, intent_id, source=source)
        return True


def _refresh_payment(session: Session, gateway: Gateway, intent_id: str, *, source: str) -> None:
    """Stripe's intent (fetched under our payment's row lock), checked and applied."""
    payment = session.scalar(
        select(Payment).where(Payment.stripe_payment_intent_id == intent_id).with_for_update()
    )
    if payment is None:
        log.info("stripe event for an intent we do not know", extra={"intent_id": intent_id})
        return
    intent = _fetch(session, gateway.retrieve_payment_intent, intent_id, source, payment.id)
    if intent is not None:
        state.apply_intent(session, payment, intent, current=True, source=source)


def _apply_refund(session: Session, gateway: Gateway, stripe_refund_id: str, *, source: str):
    """Stripe's refund applied to ours if it is ours; else the intent it belongs to, whose
    refunded total moved (a refund made outside pay_api, e.g. in the Dashboard)."""
    refund_state = _fetch(session, gateway.retrieve_refund, stripe_refund_id, source, None)
    if refund_state is None:
        return None
    refund = refunds.find_by_stripe(session, refund_state)
    if refund is not None:
        # Ours: the payment's total is recounted from our refunds (apply_refund).
        refunds.apply_refund(session, refund, refund_state, source=source)
        return None
    return refund_state.payment_intent_id


def _fetch(session: Session, retrieve, object_id: str, source: str, payment_id):
    """Stripe's object named by the event; None (and a flag) when Stripe has no such object."""
    try:
        return retrieve(object_id)
    except GatewayRejected as exc:
        raise_flag(
            session,
            kind="object_missing",
            stripe_object_id=object_id,
            payment_id=payment_id,
            source=source,
            details={"stripe_code": exc.stripe_code},
        )
        return None
