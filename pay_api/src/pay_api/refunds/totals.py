"""A payment's refunded total: our succeeded refunds plus what was refunded outside pay_api.

Refunds made elsewhere (Stripe's Dashboard) are known only from Stripe's total on the charge
(`charge.refunded`, an intent snapshot with its charge). That part is kept on its own
(`payments.refunded_outside`, never lowered: snapshots arrive late and out of order), so that
`amount_refunded` can always be recounted from our refunds — up when one succeeds, down when a
succeeded one fails later — without counting anything twice.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pay_api.payments.models import Payment
from pay_api.refunds.models import OPEN_OR_DONE_REFUND_STATUSES, Refund


def _sum(session: Session, payment: Payment, *conditions) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment.id, *conditions
        )
    )
    return int(total or 0)


def recount(session: Session, payment: Payment) -> None:
    """`amount_refunded` = our succeeded refunds + the part refunded outside pay_api."""
    succeeded = _sum(session, payment, Refund.status == "succeeded")
    payment.amount_refunded = min(payment.amount, succeeded + payment.refunded_outside)


def apply_stripe_total(session: Session, payment: Payment, total: int) -> bool:
    """Stripe's refunded total on the charge; True if `amount_refunded` changed.

    Our refunds Stripe may have are in it — those it answered for, and those whose create was
    started but whose answer we never got (a lost reply, a crash): the rest was refunded outside.
    Counting a started create as ours can only undercount "outside" for now, which the next total
    corrects (`refunded_outside` only rises); overcounting it would never be undone."""
    ours = _sum(
        session,
        payment,
        or_(Refund.stripe_refund_id.is_not(None), Refund.stripe_create_started_at.is_not(None)),
        Refund.status.in_(OPEN_OR_DONE_REFUND_STATUSES),
    )
    outside = max(0, min(total, payment.amount) - ours)
    before = payment.amount_refunded
    if outside > payment.refunded_outside:
        payment.refunded_outside = outside
    recount(session, payment)
    return payment.amount_refunded != before
