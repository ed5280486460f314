"""Stripe events: inbox row (unique event id), state machine and outbox in ONE transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from pay_api.db import Database
from pay_api.gateway import IntentState, RefundState
from pay_api.payments import state
from pay_api.payments.models import Payment
from pay_api.refunds import service as refunds
from pay_api.webhooks.models import StripeEvent

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
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed"})


def handle_event(*, db: Database, event: dict[str, Any]) -> bool:
    """Apply a verified event once; False when it is a duplicate."""
    with db.transaction() as session:
        first_time = session.execute(
            insert(StripeEvent)
            .values(id=event["id"], type=event["type"])
            .on_conflict_do_nothing(index_elements=[StripeEvent.id])
            .returning(StripeEvent.id)
        ).first()
        if first_time is None:
            log.info("duplicate stripe event ignored", extra={"stripe_event": event["id"]})
            return False
        event_type = event["type"]
        obj = (event.get("data") or {}).get("object") or {}
        if event_type in PAYMENT_INTENT_EVENTS:
            intent = IntentState.from_stripe(obj)
            payment = _payment_for_intent(session, intent.id)
            if payment is not None:
                state.apply_intent(session, payment, intent)
        elif event_type == "charge.refunded":
            intent_id = obj.get("payment_intent")
            intent_id = intent_id.get("id") if isinstance(intent_id, dict) else intent_id
            payment = _payment_for_intent(session, intent_id) if intent_id else None
            if payment is not None:
                refunds.apply_charge_refunded(session, payment, int(obj.get("amount_refunded", 0)))
        elif event_type in REFUND_EVENTS:
            refund_state = RefundState.from_stripe(obj)
            refund = refunds.find_by_stripe(session, refund_state)
            if refund is not None:
                refunds.apply_refund(session, refund, refund_state)
        else:
            log.info("stripe event type not handled", extra={"event_type": event_type})
        return True


def _payment_for_intent(session, intent_id: str | None) -> Payment | None:
    """The payment whose stored intent this is (events about other intents are ignored)."""
    if not intent_id:
        return None
    payment = session.scalar(
        select(Payment).where(Payment.stripe_payment_intent_id == intent_id).with_for_update()
    )
    if payment is None:
        log.info("stripe event for an intent we do not know", extra={"intent_id": intent_id})
    return payment
