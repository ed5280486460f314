"""Payments: reading them, registering them with pay_api, and moving them through the state
machine (`billing.payments.state`) from whatever pay_api reports — an answer, an event or the
reconciler's question. Callers lock the payment row (`lock_payment`) before moving it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import wall_now
from billing.config import Settings
from billing.db import holding, lock_row, written_together
from billing.errors import PaymentNotFound
from billing.outbox import note_access_change
from billing.payments import state
from billing.payments.models import LedgerEntry, Payment, Refund
from billing.payments.schemas import AdminPaymentOut, PaymentOut, RefundOut
from billing.payments.state import GATEWAY_PAYMENT_STATUSES, UNPAID_FINAL_STATUSES
from billing.promotions import redemptions
from billing.renewals import transitions as renewals
from billing.subscriptions import state as subscription_state
from billing.subscriptions.models import LIVE_STATUSES, Subscription
from billing.subscriptions.periods import period_end

logger = logging.getLogger(__name__)


# --- reading ---------------------------------------------------------------------------------
async def get_own(*, session: AsyncSession, user_id: uuid.UUID, payment_id: uuid.UUID) -> Payment:
    """The user's payment; someone else's or an unknown id is not found."""
    payment = await session.get(Payment, payment_id)
    if payment is None or payment.user_id != user_id:
        raise PaymentNotFound()
    return payment


async def list_for_user(
    *, session: AsyncSession, user_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Payment], int]:
    """A page of the user's payments, newest first, and their total."""
    total = await session.scalar(select(func.count()).where(Payment.user_id == user_id))
    payments = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(payments), int(total or 0)


async def refunds_by_payment(
    *, session: AsyncSession, payment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Refund]]:
    by_payment: dict[uuid.UUID, list[Refund]] = {pid: [] for pid in payment_ids}
    if payment_ids:
        refunds = await session.scalars(
            select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.created_at)
        )
        for refund in refunds:
            by_payment[refund.payment_id].append(refund)
    return by_payment


async def present(
    *, session: AsyncSession, payments: Sequence[Payment], admin: bool = False
) -> list[PaymentOut]:
    """Payments as the API shows them, each with its refunds."""
    refunds = await refunds_by_payment(session=session, payment_ids=[p.id for p in payments])
    model = AdminPaymentOut if admin else PaymentOut
    return [
        model.model_validate(p).model_copy(
            update={"refunds": [RefundOut.model_validate(r) for r in refunds[p.id]]}
        )
        for p in payments
    ]


async def lock_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    """The payment, row-locked for this transaction (every move of a payment holds this lock)."""
    return await lock_row(session, Payment, payment_id)


# --- the state machine, applied ------------------------------------------------------------
def schedule_check(payment: Payment, *, now: datetime, settings: Settings, retry: bool) -> None:
    """When the worker looks at this payment next: back-off doubling per attempt, capped."""
    attempts = payment.check_attempts + 1 if retry else 0
    delay = min(settings.reconcile_max_seconds, settings.reconcile_base_seconds * 2**attempts)
    payment.check_attempts = attempts
    payment.next_check_at = now + timedelta(seconds=delay)


@dataclass(frozen=True)
class PaymentReport:
    """What pay_api says about a payment (docs/contracts.md: its payment view, or an event).

    `reported_at`: when the report was current (an event's `occurred_at`, or when billing asked);
    a report without it never sends a `processing` payment back to `pending`."""

    status: str
    failure_code: str | None = None
    failure_message: str | None = None
    payment_intent_id: str | None = None
    amount_refunded: int | None = None
    refunded_outside: int | None = None
    reported_at: datetime | None = None

    @classmethod
    def from_answer(cls, answer: dict[str, Any], *, asked_at: datetime | None) -> PaymentReport:
        """pay_api's JSON view of a payment, as its internal API answers it."""
        return cls(
            status=str(answer.get("status", "pending")),
            failure_code=answer.get("failure_code"),
            failure_message=answer.get("failure_message"),
            payment_intent_id=answer.get("stripe_payment_intent_id"),
            amount_refunded=answer.get("amount_refunded"),
            refunded_outside=answer.get("refunded_outside"),
            reported_at=asked_at,
        )


async def apply_gateway_status(
    session: AsyncSession,
    *,
    payment: Payment,
    report: PaymentReport,
    now: datetime,
    settings: Settings,
    by_reconciler: bool = False,
) -> bool:
    """Apply the status pay_api reports to a locked payment; True if it moved."""
    status, reported_at = report.status, report.reported_at
    failure_code, failure_message = report.failure_code, report.failure_message
    payment_intent_id = report.payment_intent_id
    if status not in GATEWAY_PAYMENT_STATUSES:
        logger.warning("unknown payment status from pay_api", extra={"status": status})
        return False
    if payment_intent_id:
        payment.stripe_payment_intent_id = payment_intent_id
    # pay_api says `canceled`; past the deadline that is billing's own expiry.
    target = "expired" if status == "canceled" and now >= payment.expires_at else status
    if payment.status == "unknown" and not by_reconciler:
        # Only the reconciler leaves `unknown`: wake it up rather than trust one event.
        payment.next_check_at = now
        return False
    if target == payment.status and target in ("pending", "processing"):
        # Same state, fresher details (a declined card the user may retry with another one).
        payment.failure_code, payment.failure_message = failure_code, failure_message
        payment.updated_at = now
        return False
    newer_news = reported_at is not None and (
        payment.processing_reported_at is None or reported_at > payment.processing_reported_at
    )
    before = payment.status
    if not state.move(payment, target, now=now, by_reconciler=by_reconciler, newer_news=newer_news):
        return False
    logger.info(
        "payment moved", extra={"payment_id": str(payment.id), "from": before, "to": target}
    )
    if target == "succeeded":
        payment.failure_code = payment.failure_message = None
        await _on_succeeded(session, payment=payment, now=now, settings=settings)
    else:
        payment.failure_code, payment.failure_message = failure_code, failure_message
    if target in UNPAID_FINAL_STATUSES:
        await _on_unpaid(session, payment=payment, now=now, settings=settings)
    if target == "processing":
        # Our own clock for news without a date: later than anything pay_api wrote before it.
        payment.processing_reported_at = reported_at or wall_now()
    if target in ("pending", "processing", "unknown"):
        # `unknown` (pay_api lost Stripe's answer to a confirmation): the reconciler asks soon.
        schedule_check(payment, now=now, settings=settings, retry=False)
    return True


async def lock_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> Subscription:
    return await lock_row(session, Subscription, subscription_id)


# A payment's one charge row (the unique index makes a second impossible). Built once, on the
# table: a batch of renewals writes one per payment, and building the statement each time (its
# values, its cache key, the ORM's bulk-insert path) cost more than sending it.
_LEDGER_CHARGE = insert(LedgerEntry.__table__).on_conflict_do_nothing(
    index_elements=["payment_id"], index_where=text("kind = 'charge'")
)


HELD_CHARGES = holding("billing.held_ledger_charges", "ledger charges")


def charges_written_together(session: AsyncSession):
    """Inside, the ledger charges of payments that succeed are held and written at the end in
    one call (`db.written_together`; nothing inside reads the ledger)."""
    return written_together(session, HELD_CHARGES, _LEDGER_CHARGE)


async def _on_succeeded(
    session: AsyncSession, *, payment: Payment, now: datetime, settings: Settings
) -> None:
    """Money was taken: one ledger charge (the unique index makes a second impossible); a first
    payment makes the subscription active for one period, a renewal extends it."""
    charge = dict(
        payment_id=payment.id,
        user_id=payment.user_id,
        kind="charge",
        amount=payment.amount,
        currency=payment.currency,
        gross_amount=payment.gross_amount,
        discount_amount=payment.discount_amount,
    )
    held = session.info.get(HELD_CHARGES)
    if held is not None:
        held.append(charge)
    else:
        await session.execute(_LEDGER_CHARGE, charge)
    payment.succeeded_at = now
    if payment.kind != "renewal":  # a code is redeemed with a first payment, never a renewal
        await redemptions.settle(
            session, payment_id=payment.id, payment_status="succeeded", now=now
        )
    subscription = await lock_subscription(session, payment.subscription_id)
    if payment.kind == "renewal":
        await renewals.on_paid(
            session, payment=payment, subscription=subscription, now=now, settings=settings
        )
        return
    if not subscription_state.may("activate", subscription.status):
        # A first payment only ever completes an incomplete subscription.
        _flag(subscription, f"payment {payment.id} succeeded while {subscription.status}", now)
        return
    if subscription.status == "incomplete_expired":
        other_live = await session.scalar(
            select(Subscription.id).where(
                Subscription.user_id == subscription.user_id,
                Subscription.plan_id == subscription.plan_id,
                Subscription.status.in_(LIVE_STATUSES),
                Subscription.id != subscription.id,
            )
        )
        if other_live is not None:
            # Charged after we gave up, and the user bought again meanwhile: a manager refunds.
            _flag(
                subscription, f"payment {payment.id} succeeded after expiry; plan held again", now
            )
            return
    start = now
    end = period_end(start, unit=subscription.period_unit, count=subscription.period_count)
    subscription_state.activate(subscription, start=start, end=end, now=now)
    payment.period_start, payment.period_end = start, end
    note_access_change(session, subscription.user_id, "subscription activated")
    await renewals.queue_receipt(session, settings, subscription, payment)


async def _on_unpaid(
    session: AsyncSession, *, payment: Payment, now: datetime, settings: Settings
) -> None:
    if payment.kind != "renewal":  # a code is redeemed with a first payment, never a renewal
        await redemptions.settle(
            session, payment_id=payment.id, payment_status=payment.status, now=now
        )
    subscription = await lock_subscription(session, payment.subscription_id)
    if payment.kind == "renewal":
        await renewals.on_unpaid(
            session, payment=payment, subscription=subscription, now=now, settings=settings
        )
        return
    subscription_state.expire_incomplete(subscription, now=now)


def _flag(subscription: Subscription, note: str, now: datetime) -> None:
    logger.error(
        "subscription needs attention",
        extra={"subscription_id": str(subscription.id), "note": note},
    )
    subscription_state.flag(subscription, note, now=now)


# --- registration with pay_api -------------------------------------------------------------
def lease_until(seconds: float) -> datetime:
    """A lease (`claimed_until`) taken now, for `seconds` of real time. Leases keep processes
    off each other's rows, so they are on the wall clock, not billing's: a test clock moved a
    day between two workers' passes must not hand the second a row the first holds (the chaos
    run caught one renewal charged by two workers at once, its email sent twice)."""
    return wall_now() + timedelta(seconds=seconds)


def lease_free(model: type):
    """The condition: nobody holds a lease on the row (none, or it ran out)."""
    return or_(model.claimed_until.is_(None), model.claimed_until < wall_now())


async def claim(
    session: AsyncSession, model: type, row_id: uuid.UUID, *conditions, seconds: int
) -> bool:
    """Take a short lease on a row, so one process at a time talks to pay_api about it."""
    claimed = await session.scalar(
        update(model)
        .where(model.id == row_id, lease_free(model), *conditions)
        .values(claimed_until=lease_until(seconds))
        .returning(model.id)
    )
    await session.commit()
    return claimed is not None
