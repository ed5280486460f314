"""pay_api's view of one payment, applied: the ONE way a report about a payment changes billing,
whether it is an answer to billing's question (register, cancel, reconcile) or an event.

A report carries the payment's status and Stripe's refunded total; both are applied to the locked
payment: the status through the state machine (`apply_gateway_status`), the total through
`record_refunded_outside` (refunds made at Stripe's Dashboard, not through billing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.payments.models import Payment
from billing.payments.service import apply_gateway_status
from billing.settlement.outside import record_refunded_outside


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
        status=report.status,
        now=now,
        settings=settings,
        failure_code=report.failure_code,
        failure_message=report.failure_message,
        payment_intent_id=report.payment_intent_id,
        by_reconciler=by_reconciler,
        reported_at=report.reported_at,
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
