"""Pruning by age, done by the outbox worker when it is idle, a bounded batch per table at a time
(short transactions, indexed by age):

* Stripe event ids (the webhook inbox) older than `PAY_API_KEEP_STRIPE_EVENTS_DAYS` (≥ 30 days:
  Stripe retries a webhook for 3 days, so a duplicate can no longer arrive);
* delivered outbox rows older than `PAY_API_KEEP_DELIVERED_OUTBOX_DAYS` (undelivered ones stay).

Payments and refunds are never deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from pay_api.config import Settings
from pay_api.db import Database
from pay_api.outbox import OutboxMessage
from pay_api.webhooks.models import StripeEvent


def prune(db: Database, *, settings: Settings, now: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` old rows of each table; how many went."""
    cutoffs = [
        (
            StripeEvent.id,
            StripeEvent.received_at,
            now - timedelta(days=settings.keep_stripe_events_days),
        ),
        (
            OutboxMessage.id,
            OutboxMessage.delivered_at,
            now - timedelta(days=settings.keep_delivered_outbox_days),
        ),
    ]
    deleted = 0
    for key, age, cutoff in cutoffs:
        oldest = select(key).where(age < cutoff).order_by(age).limit(limit)
        with db.transaction() as session:
            result = session.execute(
                delete(key.class_).where(key.in_(oldest.with_for_update(skip_locked=True)))
            )
            deleted += result.rowcount or 0
    return deleted
