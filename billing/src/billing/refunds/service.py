"""Refunds. Money rules (invariant 2), guarded by the database:

* the payment row is locked (`SELECT … FOR UPDATE`) while a refund is reserved on it;
* `payments.refunded_amount` (pending + succeeded refunds) has a CHECK `<= amount`;
* each refund writes a ledger `refund` row when asked, and a `reversal` row if it fails later.

Lock order everywhere: payment, then refund, then subscription.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.db import lock_row
from billing.errors import (
    PaymentAlreadyRefunded,
    PaymentNotFound,
    PaymentNotRefundable,
    RefundExceedsRemaining,
    RefundWindowPassed,
)
from billing.idempotency import run_once
from billing.notifications import emails
from billing.outbox import commit, note_access_change
from billing.pay_api import PayApiRejected, PayApiUnavailable
from billing.payments.models import LedgerEntry, Payment, Refund
from billing.payments.schemas import RefundOut
from billing.payments.service import claim, lock_payment, lock_subscription
from billing.payments.state import REFUNDABLE_STATUSES, refund_may_move, settle_refunds
from billing.renewals import transitions as renewal_transitions
from billing.resources import Resources
from billing.subscriptions import state as subscription_state

logger = logging.getLogger(__name__)

# pay_api answers that mean "this refund will never happen" (others are retried).
_FINAL_REJECTIONS = (409, 422)


def refund_window_end(payment: Payment, refund_window_days: int) -> datetime | None:
    """Until when the user may take their money back (from the start of the paid period)."""
    start = payment.period_start or payment.succeeded_at
    return start + timedelta(days=refund_window_days) if start else None


@dataclass(frozen=True)
class RefundRequest:
    """What is asked: which payment, how much, why, by whom, and whether it ends the subscription.

    `user_id` set: the user's own full refund within the plan's refund window (`by_user`).
    `user_id` None: a manager's (or Stripe's, for refunds made outside billing) refund of
    `amount` (None = what is left), no window."""

    payment_id: uuid.UUID
    reason: str
    initiated_by: str
    end_subscription: bool
    user_id: uuid.UUID | None = None
    amount: int | None = None

    @classmethod
    def by_user(cls, *, payment_id: uuid.UUID, user_id: uuid.UUID, reason: str) -> RefundRequest:
        """The user takes all their money back; the subscription ends."""
        return cls(
            payment_id=payment_id,
            user_id=user_id,
            reason=reason,
            initiated_by="user",
            end_subscription=True,
        )


async def reserve(
    *,
    session: AsyncSession,
    request: RefundRequest,
    now: datetime,
    refund_id: uuid.UUID | None = None,
) -> Refund:
    """Write a pending refund under the payment's lock and reserve its amount; not committed.

    `refund_id` (derived from the request's Idempotency-Key): if that refund already exists, it is
    the answer — a retry whose first attempt committed the refund but not its key reserves nothing
    more (the primary key is the guard).
    """
    user_id, amount = request.user_id, request.amount
    payment = await lock_payment(session, request.payment_id)
    if payment is None or (user_id is not None and payment.user_id != user_id):
        raise PaymentNotFound()
    if refund_id is not None:
        existing = await session.get(Refund, refund_id)
        if existing is not None:
            if existing.payment_id != payment.id:
                raise PaymentNotFound()
            return existing
    if payment.status == "refunded":
        raise PaymentAlreadyRefunded()
    if payment.status not in REFUNDABLE_STATUSES:
        raise PaymentNotRefundable()
    if payment.amount == 0:
        raise PaymentNotRefundable("Nothing was charged for this payment (fully discounted).")
    remaining = payment.amount - payment.refunded_amount
    if user_id is not None:
        if payment.refunded_amount > 0:
            raise PaymentAlreadyRefunded()
        subscription = await lock_subscription(session, payment.subscription_id)
        window_end = refund_window_end(payment, subscription.refund_window_days)
        if window_end is None or now > window_end:
            raise RefundWindowPassed()
        amount = payment.amount
    elif remaining <= 0:
        raise PaymentAlreadyRefunded()
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise RefundExceedsRemaining(
            f"At most {remaining} {payment.currency} is left to refund.",
            details={"remaining": remaining, "currency": payment.currency},
        )
    refund = Refund(
        id=refund_id or uuid.uuid4(),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status="pending",
        reason=request.reason,
        initiated_by=request.initiated_by,
        ends_subscription=request.end_subscription,
        next_check_at=now,
        created_at=now,
        updated_at=now,
    )
    payment.refunded_amount += amount
    payment.updated_at = now
    session.add(refund)
    await session.flush()
    _write_ledger(session, refund, payment, "refund")
    if request.end_subscription:
        subscription = await lock_subscription(session, payment.subscription_id)
        if subscription_state.end_by_refund(subscription, now=now):
            note_access_change(session, subscription.user_id, "subscription refunded")
    try:
        await session.flush()
    except IntegrityError as exc:  # the CHECK refunded_amount <= amount: the last line of defence
        raise RefundExceedsRemaining() from exc
    return refund


def _write_ledger(session: AsyncSession, refund: Refund, payment: Payment, kind: str) -> None:
    """The ledger row of a refund (`refund` when asked) or of its failure (`reversal`)."""
    session.add(
        LedgerEntry(
            payment_id=payment.id,
            refund_id=refund.id,
            user_id=payment.user_id,
            kind=kind,
            amount=refund.amount,
            currency=refund.currency,
        )
    )


async def succeeded_total(session: AsyncSession, payment_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status == "succeeded"
        )
    )
    return int(total or 0)


async def apply_refund_status(
    session: AsyncSession,
    *,
    payment: Payment,
    refund: Refund,
    status: str,
    now: datetime,
    settings: Settings,
    stripe_refund_id: str | None = None,
    failure_code: str | None = None,
) -> bool:
    """Move a locked refund (of a locked payment) to what pay_api reports; True if it moved."""
    if stripe_refund_id:
        refund.stripe_refund_id = stripe_refund_id
    if status not in ("pending", "succeeded", "failed", "canceled"):
        logger.warning("unknown refund status from pay_api", extra={"status": status})
        return False
    if not refund_may_move(refund.status, status):
        return False
    logger.info(
        "refund moved", extra={"refund_id": str(refund.id), "from": refund.status, "to": status}
    )
    refund.status = status
    refund.failure_code = failure_code if status != "succeeded" else None
    refund.updated_at = now
    if status in ("failed", "canceled"):
        # The money did not go back: release the reservation, write the reversal.
        payment.refunded_amount -= refund.amount
        _write_ledger(session, refund, payment, "reversal")
        if refund.ends_subscription:
            subscription = await lock_subscription(session, payment.subscription_id)
            if subscription.status == "refunded":
                # Not silently reactivated: the user was told it ended; a manager decides.
                subscription_state.flag(
                    subscription,
                    f"refund {refund.id} {status} ({failure_code or 'no code'}) after it ended "
                    "this subscription; the money was not returned",
                    now=now,
                )
                logger.error(
                    "subscription needs attention",
                    extra={"subscription_id": str(subscription.id), "refund_id": str(refund.id)},
                )
    if status == "succeeded":
        # The money went back: the user gets a receipt (written with the move, sent once).
        subscription = await lock_subscription(session, payment.subscription_id)
        emails.queue(
            session,
            emails.refund_receipt(
                await renewal_transitions.about(session, settings, subscription),
                payment_id=payment.id,
                refund_id=refund.id,
                amount=refund.amount,
                currency=refund.currency,
            ),
        )
    await session.flush()
    settle_refunds(
        payment,
        amount=payment.amount,
        refunded_succeeded=await succeeded_total(session, payment.id),
        now=now,
    )
    if status == "pending":
        refund.next_check_at = now + timedelta(seconds=settings.reconcile_base_seconds)
    return True


async def lock_refund(session: AsyncSession, refund_id: uuid.UUID) -> Refund | None:
    return await lock_row(session, Refund, refund_id)


def schedule_refund_check(refund: Refund, *, now: datetime, settings: Settings) -> None:
    refund.check_attempts += 1
    delay = min(
        settings.reconcile_max_seconds, settings.reconcile_base_seconds * 2**refund.check_attempts
    )
    refund.next_check_at = now + timedelta(seconds=delay)


async def submit(
    *, resources: Resources, refund_id: uuid.UUID, now: datetime, claimed: bool = False
) -> None:
    """Send a pending refund to pay_api (idempotent by refund id) and apply its answer.

    If pay_api cannot be reached the refund stays pending, the money stays reserved, and the
    worker sends it again later."""
    settings = resources.settings
    async with resources.sessionmaker() as session:
        unsent = (Refund.status == "pending", Refund.submitted_at.is_(None))
        lease = settings.worker_claim_seconds
        if not claimed and not await claim(session, Refund, refund_id, *unsent, seconds=lease):
            return  # someone else sends it right now, or it moved on
        refund = await session.get(Refund, refund_id)
        try:
            answer = await resources.pay_api.create_refund(
                refund_id=str(refund.id),
                payment_id=str(refund.payment_id),
                amount=refund.amount,
                reason=refund.reason or "requested_by_customer",
            )
        except PayApiUnavailable:
            answer = None
            rejection = None
        except PayApiRejected as exc:
            answer = None
            rejection = exc
        payment = await lock_payment(session, refund.payment_id)
        refund = await lock_refund(session, refund_id)
        refund.claimed_until = None
        if answer is not None:
            refund.submitted_at = now
            await apply_refund_status(
                session,
                payment=payment,
                refund=refund,
                status=str(answer.get("status", "pending")),
                now=now,
                settings=settings,
                stripe_refund_id=answer.get("stripe_refund_id"),
            )
            if refund.status == "pending":
                schedule_refund_check(refund, now=now, settings=settings)
        elif rejection is not None and rejection.status_code in _FINAL_REJECTIONS:
            logger.error(
                "pay_api refused a refund",
                extra={"refund_id": str(refund_id), "code": rejection.code},
            )
            refund.submitted_at = now
            await apply_refund_status(
                session,
                payment=payment,
                refund=refund,
                status="failed",
                now=now,
                settings=settings,
                failure_code=rejection.code,
            )
        else:
            schedule_refund_check(refund, now=now, settings=settings)
        await commit(session, resources.access_cache)


# Namespace of refund ids derived from idempotency keys (any fixed UUID; never change it).
REFUND_ID_NAMESPACE = uuid.UUID("6d0f3c8e-5a1b-4f3e-9a57-2b8c1e4d7f60")


async def refund_once(
    *,
    resources: Resources,
    session: AsyncSession,
    request: RefundRequest,
    owner: str,
    scope: str,
    idempotency_key: str | None,
    fingerprint: dict,
    now: datetime,
) -> tuple[int, dict]:
    """Reserve and commit a refund, send it to pay_api: (201, the refund), once per key.

    The refund's id comes from the Idempotency-Key: the refund row commits before the key's answer
    does, so after a crash between the two a retry with the same key must find that refund, not
    reserve a second one. `fingerprint`: the request as the key remembers it (another body with
    the same key is refused)."""
    refund_id = (
        uuid.uuid5(REFUND_ID_NAMESPACE, f"{owner}|{scope}|{idempotency_key}")
        if idempotency_key
        else None
    )

    async def work() -> tuple[int, dict]:
        refund = await reserve(session=session, request=request, now=now, refund_id=refund_id)
        reserved_id = refund.id
        await commit(session, resources.access_cache)
        await submit(resources=resources, refund_id=reserved_id, now=now)
        refund = await session.get(Refund, reserved_id, populate_existing=True)
        return 201, RefundOut.model_validate(refund).model_dump(mode="json")

    return await run_once(
        sessionmaker=resources.idempotency_sessionmaker,
        owner=owner,
        scope=scope,
        key=idempotency_key,
        request=fingerprint,
        work=work,
    )
