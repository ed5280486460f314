"""pay_api's view of one payment, applied: the ONE way a report about a payment changes billing,
whether it is an answer to billing's question (register, cancel, reconcile) or an event.

A report carries the payment's status and Stripe's refunded total; both are applied to the locked
payment: the status through the state machine (`apply_gateway_status`), the total through
`record_refunded_outside` (refunds made at Stripe's Dashboard, not through billing).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.payments.models import Payment
from billing.payments.service import PaymentReport, apply_gateway_status
from billing.settlement.outside import record_refunded_outside


async def apply_payment_report(
    session: AsyncSession,
    *,
    payment: Payment,
    report: PaymentReport,
    now: datetime,
    settings: Settings,
    by_reconciler: bool = False,
) -> bool:
    """Apply a report to a locked payment (not committed); True if anything changed.

    `by_reconciler`: only the reconciler's own question may move a payment out of `unknown`."""
    moved = await apply_gateway_status(
        session,
        payment=payment,
        report=report,
        now=now,
        settings=settings,
        by_reconciler=by_reconciler,
    )
    recorded = await record_refunded_outside(
        session,
        payment=payment,
        amount_refunded=report.amount_refunded,
        refunded_outside=report.refunded_outside,
        now=now,
        settings=settings,
        reported_at=report.reported_at,
    )
    return moved or recorded
