"""Pruning by age: the rows that only guard against repeats grow forever unless someone deletes
them. The worker does, a bounded batch per table and pass (short transactions, indexed by age):

* idempotency keys older than `BILLING_KEEP_IDEMPOTENCY_KEYS_HOURS` (≥ 24 h, as Stripe keeps its
  own): a client retrying later than that makes a new request;
* pay_api's event ids (`processed_events`) older than `BILLING_KEEP_PROCESSED_EVENTS_DAYS`
  (≥ 30 days, longer than pay_api's outbox or Stripe retries an event);
* delivered outbox rows older than `BILLING_KEEP_DELIVERED_OUTBOX_DAYS` (undelivered ones stay).

Ledger, payment, refund and subscription rows are never deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.idempotency import IdempotencyKey
from billing.outbox import OutboxMessage
from billing.payments.models import ProcessedEvent


def _cutoffs(settings: Settings, now: datetime) -> list[tuple[type, object, datetime]]:
    """(table, its age column, delete what is older than this)."""
    return [
        (
            IdempotencyKey,
            IdempotencyKey.created_at,
            now - timedelta(hours=settings.keep_idempotency_keys_hours),
        ),
        (
            ProcessedEvent,
            ProcessedEvent.received_at,
            now - timedelta(days=settings.keep_processed_events_days),
        ),
        (
            OutboxMessage,
            OutboxMessage.delivered_at,
            now - timedelta(days=settings.keep_delivered_outbox_days),
        ),
    ]


async def prune(session: AsyncSession, *, settings: Settings, now: datetime, limit: int) -> int:
    """Delete up to `limit` old rows of each table (committed); how many went."""
    deleted = 0
    for model, age, cutoff in _cutoffs(settings, now):
        key = model.__mapper__.primary_key[0]
        oldest = (
            select(key)
            .where(age < cutoff)
            .order_by(age)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await session.execute(delete(model).where(key.in_(oldest.scalar_subquery())))
        deleted += result.rowcount or 0
        await session.commit()
    return deleted
