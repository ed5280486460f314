"""A customer's timeline: everything billing knows about one user, in order. Each source turns
one kind of row into items; a new kind is one more source in SOURCES. Renewals are payments of
kind `renewal`; emails are the outbox rows they are sent from.
Manager actions live in the admin's audit log, which the admin merges in."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.money import for_people
from billing.outbox import TOPIC_EMAIL, OutboxMessage
from billing.payments.models import Payment, Refund
from billing.reports.schemas import TimelineItem
from billing.subscriptions.models import Subscription

Source = Callable[[AsyncSession, uuid.UUID], Awaitable[list[TimelineItem]]]


async def _subscriptions(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for s in await session.scalars(select(Subscription).where(Subscription.user_id == user_id)):
        ids = {"subscription_id": s.id, "status": s.status}
        items.append(
            TimelineItem(at=s.created_at, kind="subscription_created", title="Plan bought", **ids)
        )
        if s.canceled_at is not None:
            items.append(
                TimelineItem(
                    at=s.canceled_at,
                    kind="subscription_canceled",
                    title="Auto-renewal turned off",
                    **ids,
                )
            )
        if s.ended_at is not None:
            items.append(
                TimelineItem(
                    at=s.ended_at, kind="subscription_ended", title=f"Ended ({s.status})", **ids
                )
            )
    return items


async def _payments(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for p in await session.scalars(select(Payment).where(Payment.user_id == user_id)):
        money = {"amount": p.amount, "currency": p.currency, "status": p.status}
        ids = {"payment_id": p.id, "subscription_id": p.subscription_id}
        label = "Renewal payment" if p.kind == "renewal" else "Payment"
        items.append(
            TimelineItem(
                at=p.created_at,
                kind="payment_created",
                title=f"{label} of {for_people(p.amount, p.currency)} started",
                **money,
                **ids,
            )
        )
        if p.succeeded_at is not None:
            items.append(
                TimelineItem(
                    at=p.succeeded_at,
                    kind="payment_succeeded",
                    title=f"{label} succeeded",
                    **money,
                    **ids,
                )  # fmt: skip
            )
        elif p.status in ("failed", "canceled", "expired", "unknown"):
            reason = f": {p.failure_code}" if p.failure_code else ""
            items.append(
                TimelineItem(
                    at=p.updated_at,
                    kind=f"payment_{p.status}",
                    title=f"{label} {p.status}{reason}",
                    **money,
                    **ids,
                )  # fmt: skip
            )
        elif p.failure_code:
            # Still open after a decline: the user may try another card.
            items.append(
                TimelineItem(
                    at=p.updated_at,
                    kind="payment_declined",
                    title=f"{label} attempt declined: {p.failure_code}",
                    **money,
                    **ids,
                )  # fmt: skip
            )
    return items


async def _refunds(session: AsyncSession, user_id: uuid.UUID) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for r in await session.scalars(select(Refund).where(Refund.user_id == user_id)):
        money = {"amount": r.amount, "currency": r.currency, "status": r.status}
        ids = {"payment_id": r.payment_id, "refund_id": r.id}
        by = {"user": "the user", "admin": "a manager", "stripe": "Stripe (outside billing)"}
        items.append(
            TimelineItem(
                at=r.created_at,
                kind="refund_requested",
                title=f"Refund of {for_people(r.amount, r.currency)} asked by "
                f"{by.get(r.initiated_by, r.initiated_by)}",
                **money,
                **ids,
            )
        )
        if r.status != "pending":
            items.append(
                TimelineItem(
                    at=r.updated_at,
                    kind=f"refund_{r.status}",
                    title=f"Refund {r.status}",
                    **money,
                    **ids,
                )  # fmt: skip
            )
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
