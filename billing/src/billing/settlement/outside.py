"""Refunds made outside billing (Stripe's Dashboard): pay_api reports them only as the payment's
`amount_refunded` (Stripe's refunded total). What billing's own refunds do not account for is
recorded as a refund of its own — through the same code as billing's refunds (reserve, then
succeeded), so the ledger row, the payment's status and the subscription follow the usual rules.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.payments.models import Payment, Refund
from billing.payments.state import REFUNDABLE_STATUSES
from billing.refunds.service import (
    RefundRequest,
    apply_refund_status,
    reserve,
    succeeded_total,
)

logger = logging.getLogger(__name__)

OUTSIDE_REASON = "refunded outside billing"
OUTSIDE_INITIATOR = "stripe"


async def known_to_stripe(session: AsyncSession, payment_id) -> int:
    """Billing's refunds that are in Stripe's total: succeeded ones, and pending ones Stripe
    already has (their Stripe id is known; Stripe counts a refund from its creation)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id,
            or_(
                Refund.status == "succeeded",
                and_(Refund.status == "pending", Refund.stripe_refund_id.is_not(None)),
            ),
        )
    )
    return int(total or 0)


async def recorded_outside(session: AsyncSession, payment_id) -> int:
    """What billing has already recorded as refunded outside it."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id,
            Refund.initiated_by == OUTSIDE_INITIATOR,
            Refund.status.in_(("pending", "succeeded")),
        )
    )
    return int(total or 0)


async def record_refunded_outside(
    session: AsyncSession,
    *,
    payment: Payment,
    amount_refunded: int | None,
    now: datetime,
    refunded_outside: int | None = None,
    settings: Settings,
    reported_at: datetime | None = None,
) -> bool:
    """Apply Stripe's refunded total to a locked payment; True if a refund was recorded.

    Idempotent: once recorded, the same total finds nothing missing. Never more than what is
    left of the payment (pending refunds keep their reservation; the CHECK guards it too).
    A total reported before one of billing's refunds failed may still count that refund: it is
    not trusted (`reported_at`), a newer report will tell.

    `refunded_outside` (pay_api's own, exact figure, which never counts billing's refunds) is
    preferred when the report carries it: then what is missing does not depend on the state of
    billing's refunds at all (a lost answer, a late event), only on what is already recorded."""
    if payment.status not in REFUNDABLE_STATUSES:
        return False
    if refunded_outside == 0:
        return False  # nothing refunded outside: nothing can be missing (no query needed)
    if refunded_outside is not None:
        missing = refunded_outside - await recorded_outside(session, payment.id)
    else:
        if not amount_refunded:
            return False
        if reported_at is not None and await _a_refund_failed_since(
            session, payment.id, reported_at
        ):
            logger.info(
                "refunded total older than a failed refund ignored",
                extra={"payment_id": str(payment.id)},
            )
            return False
        missing = min(amount_refunded, payment.amount) - await known_to_stripe(session, payment.id)
    missing = min(missing, payment.amount - payment.refunded_amount)
    if missing <= 0:
        return False
    # The sessions do not autoflush, and `reserve` re-reads the locked payment: the moves made
    # so far in this transaction (e.g. to `succeeded`) must be in the database first.
    await session.flush()
    fully = await succeeded_total(session, payment.id) + missing >= payment.amount
    outside = RefundRequest(
        payment_id=payment.id,
        amount=missing,
        reason=OUTSIDE_REASON,
        initiated_by=OUTSIDE_INITIATOR,
        end_subscription=fully,
    )
    refund = await reserve(session=session, request=outside, now=now)
    refund.submitted_at = now  # made at Stripe already: never sent to pay_api
    await apply_refund_status(
        session, payment=payment, refund=refund, status="succeeded", now=now, settings=settings
    )
    logger.warning(
        "refund made outside billing recorded",
        extra={"payment_id": str(payment.id), "refund_id": str(refund.id), "amount": missing},
    )
    return True


async def _a_refund_failed_since(session: AsyncSession, payment_id, moment: datetime) -> bool:
    return (
        await session.scalar(
            select(Refund.id)
            .where(
                Refund.payment_id == payment_id,
                Refund.status.in_(("failed", "canceled")),
                Refund.stripe_refund_id.is_not(None),
                Refund.updated_at > moment,
            )
            .limit(1)
        )
        is not None
    )
