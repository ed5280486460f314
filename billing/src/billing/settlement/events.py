"""Events from pay_api (its transactional outbox): applied once each, in one transaction with the
insert of their id into the inbox, under the payment's row lock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.errors import EventMismatch, PaymentNotFound, RefundNotFound, Unprocessable
from billing.money import MAX_AMOUNT
from billing.payments.models import REFUND_STATUSES, ProcessedEvent
from billing.payments.service import PaymentReport, lock_payment
from billing.payments.state import GATEWAY_PAYMENT_STATUSES
from billing.refunds.service import apply_refund_status, lock_refund
from billing.settlement.answers import apply_payment_report


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
        .values(
            event_id=event.event_id,
            object=event.object,
            payment_id=event.payment_id,
            refund_id=event.refund_id,
            status=event.status,
            applied=False,
        )
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
