"""Events from pay_api (its transactional outbox): applied once each, in one transaction with the
insert of their id into the inbox, under the payment's row lock.

pay_api sends them in batches (`apply_events`): one transaction for the batch, each event inside a
SAVEPOINT of its own, so an event billing refuses or that meets a database error is rolled back
alone and reported, and the others apply.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.db import lock_rows, utcnow
from billing.errors import (
    EventMismatch,
    PaymentNotFound,
    RefundNotFound,
    Unprocessable,
    connection_lost,
    error_for,
)
from billing.log import request_id_var
from billing.money import MAX_AMOUNT
from billing.payments.models import REFUND_STATUSES, Payment, ProcessedEvent
from billing.payments.service import PaymentReport, lock_payment
from billing.payments.state import GATEWAY_PAYMENT_STATUSES
from billing.refunds.service import apply_refund_status, lock_refund
from billing.settlement.answers import apply_payment_report

logger = logging.getLogger(__name__)

# Events in one batch: pay_api sends up to this many in one POST.
MAX_BATCH_EVENTS = 100


class PaymentEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID
    object: Literal["payment", "refund"]
    payment_id: uuid.UUID
    refund_id: uuid.UUID | None = None
    status: str = Field(max_length=32)
    amount: int = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    amount_refunded: int = Field(0, ge=0, le=MAX_AMOUNT)
    # pay_api's exact figure for refunds made outside pay_api (absent from older senders)
    refunded_outside: int | None = Field(None, ge=0, le=MAX_AMOUNT)
    failure_code: str | None = Field(None, max_length=100)
    failure_message: str | None = Field(None, max_length=2000)
    stripe_id: str | None = Field(None, max_length=255)
    occurred_at: datetime | None = None


class EventResult(BaseModel):
    applied: bool


class BatchEvent(PaymentEvent):
    """An event in a batch, with the request id its log lines carry (the purchase's)."""

    request_id: str | None = Field(None, max_length=200)


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[BatchEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class EventError(BaseModel):
    status: int
    code: str
    message: str


class EventApplied(BaseModel):
    event_id: uuid.UUID
    applied: bool


class EventFailed(BaseModel):
    event_id: uuid.UUID
    error: EventError


class BatchResult(BaseModel):
    """One result per event, in the order they were sent."""

    results: list[Annotated[EventApplied | EventFailed, Field(union_mode="left_to_right")]]


async def apply_events(
    *, session: AsyncSession, events: list[BatchEvent], settings: Settings
) -> list[EventApplied | EventFailed]:
    """Apply a batch in the caller's transaction (not committed), in order.

    The usual batch — payment events about payments billing holds, with their figures — is
    applied all together, its payments locked up front in one statement, at no cost of
    savepoints. Any other batch, and one whose application fails all the same (a deadlock), is
    applied with each event in its own SAVEPOINT: one that fails (404, 422, a deadlock) leaves no
    trace and is reported; the others stand. A lost connection ends the batch (the caller's
    transaction is gone anyway)."""
    payments = {
        payment.id: payment
        for payment in await lock_rows(session, Payment, [event.payment_id for event in events])
    }
    if all(_already_applied(event, payments.get(event.payment_id)) for event in events):
        return await _record_unmoved(session, events)
    if all(_fits(event, payments.get(event.payment_id)) for event in events):
        try:
            return await _apply_together(session=session, events=events, settings=settings)
        except Exception as exc:
            if connection_lost(exc):
                raise
            await session.rollback()
            session.expunge_all()
    del payments
    return await _apply_each_alone(session=session, events=events, settings=settings)


def _fits(event: BatchEvent, payment: Payment | None) -> bool:
    """`apply_event`'s checks of a payment event, passed (so applying it will not refuse it)."""
    return (
        payment is not None
        and event.object == "payment"
        and event.currency.lower() == payment.currency
        and event.status in GATEWAY_PAYMENT_STATUSES
        and event.amount == payment.amount
    )


# Final statuses a repeated report leaves as they are (`state.move` refuses a move to itself).
_SETTLED = frozenset({"succeeded", "failed", "canceled"})


def _already_applied(event: BatchEvent, payment: Payment | None) -> bool:
    """A payment event that can move nothing: its payment already is in the final status it
    reports, with the same intent, and nothing refunded outside billing to record — the usual
    news of a renewal whose answer billing's worker applied (pay_api defers those events)."""
    return (
        _fits(event, payment)
        and event.status in _SETTLED
        and payment.status == event.status
        and (event.stripe_id is None or event.stripe_id == payment.stripe_payment_intent_id)
        and (
            event.refunded_outside == 0
            or (event.refunded_outside is None and not event.amount_refunded)
        )
    )


async def _record_unmoved(
    session: AsyncSession, events: list[BatchEvent]
) -> list[EventApplied | EventFailed]:
    """A batch where no event can move anything (`_already_applied`): their ids go into the
    inbox in one statement, as `apply_event` would insert each, and each answers not applied."""
    await session.execute(
        insert(ProcessedEvent).on_conflict_do_nothing(index_elements=["event_id"]),
        [_inbox_row(event) for event in events],
    )
    return [EventApplied(event_id=event.event_id, applied=False) for event in events]


def _inbox_row(event: PaymentEvent) -> dict:
    """The event's row in the inbox (`processed_events`), not applied yet."""
    return dict(
        event_id=event.event_id,
        object=event.object,
        payment_id=event.payment_id,
        refund_id=event.refund_id,
        status=event.status,
        applied=False,
    )


async def _apply_together(
    *, session: AsyncSession, events: list[BatchEvent], settings: Settings
) -> list[EventApplied | EventFailed]:
    results: list[EventApplied | EventFailed] = []
    for event in events:
        token = request_id_var.set(event.request_id) if event.request_id else None
        try:
            applied = await apply_event(
                session=session, event=event, settings=settings, now=utcnow()
            )
            results.append(EventApplied(event_id=event.event_id, applied=applied))
        finally:
            if token is not None:
                request_id_var.reset(token)
    return results


async def _apply_each_alone(
    *, session: AsyncSession, events: list[BatchEvent], settings: Settings
) -> list[EventApplied | EventFailed]:
    results: list[EventApplied | EventFailed] = []
    for event in events:
        token = request_id_var.set(event.request_id) if event.request_id else None
        try:
            try:
                async with session.begin_nested():
                    applied = await apply_event(
                        session=session, event=event, settings=settings, now=utcnow()
                    )
            except Exception as exc:
                if connection_lost(exc):
                    raise
                results.append(_failed(event, exc))
                # What the savepoint's rollback expired must not be read later without a query.
                session.expunge_all()
            else:
                results.append(EventApplied(event_id=event.event_id, applied=applied))
        finally:
            if token is not None:
                request_id_var.reset(token)
    return results


def _failed(event: PaymentEvent, exc: Exception) -> EventFailed:
    error = error_for(exc)
    fields = {
        "event_id": str(event.event_id),
        "payment_id": str(event.payment_id),
        "error_status": error.status_code,
        "error_code": error.code,
    }
    if error.status_code >= 500:
        logger.error("payment event failed", extra=fields, exc_info=exc)
    else:
        logger.warning("payment event refused", extra={**fields, "detail": error.message})
    return EventFailed(
        event_id=event.event_id,
        error=EventError(status=error.status_code, code=error.code, message=error.message),
    )


async def apply_event(
    *, session: AsyncSession, event: PaymentEvent, settings: Settings, now: datetime
) -> bool:
    """Apply one event (not committed); False for a duplicate or one that moves nothing.

    Checks come first, so an event billing refuses (404/422) leaves no trace and pay_api retries it.
    """
    payment = await lock_payment(session, event.payment_id)
    if payment is None:
        raise PaymentNotFound()
    if event.currency.lower() != payment.currency:
        raise EventMismatch(f"Currency {event.currency} does not match {payment.currency}.")
    refund = None
    if event.object == "payment":
        if event.status not in GATEWAY_PAYMENT_STATUSES:
            raise Unprocessable(f"Unknown payment status {event.status!r}.")
        if event.amount != payment.amount:
            raise EventMismatch(f"Amount {event.amount} does not match {payment.amount}.")
    else:
        if event.status not in REFUND_STATUSES:
            raise Unprocessable(f"Unknown refund status {event.status!r}.")
        if event.refund_id is None:
            raise Unprocessable("A refund event needs a refund_id.")
        refund = await lock_refund(session, event.refund_id)
        if refund is None or refund.payment_id != payment.id:
            raise RefundNotFound()
        if event.amount != refund.amount:
            raise EventMismatch(
                f"Amount {event.amount} does not match the refund's {refund.amount}."
            )

    first_time = await session.scalar(
        insert(ProcessedEvent)
        .values(**_inbox_row(event))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(ProcessedEvent.event_id)
    )
    if first_time is None:
        return False
    if refund is None:
        moved = await apply_payment_report(
            session,
            payment=payment,
            report=PaymentReport(
                status=event.status,
                failure_code=event.failure_code,
                failure_message=event.failure_message,
                payment_intent_id=event.stripe_id,
                # Refunds made outside billing show only in Stripe's refunded total.
                amount_refunded=event.amount_refunded,
                refunded_outside=event.refunded_outside,
                reported_at=_aware(event.occurred_at),
            ),
            now=now,
            settings=settings,
        )
    else:
        if refund.submitted_at is None:
            refund.submitted_at = now  # pay_api has it, whatever our call's fate was
        moved = await apply_refund_status(
            session,
            payment=payment,
            refund=refund,
            status=event.status,
            now=now,
            settings=settings,
            stripe_refund_id=event.stripe_id,
            failure_code=event.failure_code,
        )
    if moved:
        await session.execute(
            update(ProcessedEvent)
            .where(ProcessedEvent.event_id == event.event_id)
            .values(applied=True)
        )
    return moved


def _aware(moment: datetime | None) -> datetime | None:
    """pay_api writes UTC; a timestamp without an offset is read as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
