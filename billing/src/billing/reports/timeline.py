"""A customer's timeline: everything billing knows about one user, in order. Each source turns
one kind of row into items; a new kind is one more source in SOURCES. Renewals are payments of
kind `renewal`; emails are the outbox rows they are sent from.
Manager actions live in the admin's audit log, which the admin merges in."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.money import for_people
from billing.outbox import TOPIC_EMAIL, OutboxMessage
from billing.payments.models import Payment, Refund
from billing.reports.schemas import TimelineItem
from billing.subscriptions.models import Subscription

Source = Callable[[AsyncSession, uuid.UUID], Awaitable[list[TimelineItem]]]
# A moment in a row's life: when (None: it has not happened), its kind, its title.
Moment = tuple[datetime | None, str, str]


def _items(row_fields: dict[str, Any], moments: list[Moment]) -> list[TimelineItem]:
    """One item per moment of a row that happened, each with the row's own fields."""
    return [
        TimelineItem(at=at, kind=kind, title=title, **row_fields)
        for at, kind, title in moments
        if at is not None
    ]


def _money(row: Payment | Refund) -> dict[str, Any]:
    return {"amount": row.amount, "currency": row.currency, "status": row.status}


async def _subscriptions(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for s in await session.scalars(select(Subscription).where(Subscription.user_id == user_id)):
        moments: list[Moment] = [
            (s.created_at, "subscription_created", "Plan bought"),
            (s.canceled_at, "subscription_canceled", "Auto-renewal turned off"),
            (s.ended_at, "subscription_ended", f"Ended ({s.status})"),
        ]
        items += _items({"subscription_id": s.id, "status": s.status}, moments)
    return items


async def _payments(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for p in await session.scalars(select(Payment).where(Payment.user_id == user_id)):
        label = "Renewal payment" if p.kind == "renewal" else "Payment"
        started = f"{label} of {for_people(p.amount, p.currency)} started"
        moments: list[Moment] = [(p.created_at, "payment_created", started)]
        if p.succeeded_at is not None:
            moments.append((p.succeeded_at, "payment_succeeded", f"{label} succeeded"))
        elif p.status in ("failed", "canceled", "expired", "unknown"):
            reason = f": {p.failure_code}" if p.failure_code else ""
            moments.append((p.updated_at, f"payment_{p.status}", f"{label} {p.status}{reason}"))
        elif p.failure_code:
            # Still open after a decline: the user may try another card.
            declined = f"{label} attempt declined: {p.failure_code}"
            moments.append((p.updated_at, "payment_declined", declined))
        ids = {"payment_id": p.id, "subscription_id": p.subscription_id}
        items += _items({**_money(p), **ids}, moments)
    return items


async def _refunds(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    by = {"user": "the user", "admin": "a manager", "stripe": "Stripe (outside billing)"}
    for r in await session.scalars(select(Refund).where(Refund.user_id == user_id)):
        asked = f"Refund of {for_people(r.amount, r.currency)} asked by "
        moments: list[Moment] = [
            (r.created_at, "refund_requested", asked + by.get(r.initiated_by, r.initiated_by))
        ]
        if r.status != "pending":
            moments.append((r.updated_at, f"refund_{r.status}", f"Refund {r.status}"))
        ids = {"payment_id": r.payment_id, "refund_id": r.id}
        items += _items({**_money(r), **ids}, moments)
    return items


async def _emails(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    """Emails sent to the user: the delivered outbox rows they were sent from (kept as long as
    delivered outbox rows are, BILLING_KEEP_DELIVERED_OUTBOX_DAYS)."""
    rows = await session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.topic == TOPIC_EMAIL,  # billing/notifications/emails.py
            OutboxMessage.delivered_at.is_not(None),
            OutboxMessage.payload["user_id"].astext == str(user_id),
        )
    )
    return [
        TimelineItem(
            at=row.delivered_at,
            kind="email_sent",
            title=f"Email sent ({row.payload.get('kind', 'email')}): "
            f"{row.payload.get('subject', '')}",
            status=row.payload.get("kind"),
            payment_id=row.payload.get("payment_id"),
            subscription_id=row.payload.get("subscription_id"),
        )
        for row in rows
    ]


SOURCES: tuple[Source, ...] = (_subscriptions, _payments, _refunds, _emails)


async def timeline(*, session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    """Every item of every source, oldest first."""
    items: list[TimelineItem] = []
    for source in SOURCES:
        items.extend(await source(session, user_id))
    return sorted(items, key=lambda item: (item.at, item.kind))
