"""The newest payments across customers, for the admin's customers page before any search."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.payments.models import Payment

# A payment that ended without money after a decline — the dashboard's "failed payments"
# (figures.py, docs/contracts.md), here as an expression.
FAILED = or_(
    Payment.status == "failed",
    and_(Payment.status.in_(("expired", "canceled")), Payment.failure_code.is_not(None)),
)


async def recent_payments(*, session: AsyncSession, limit: int, failed: bool) -> list[Payment]:
    """Newest first (ix_payments_created_at)."""
    query = select(Payment).order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    if failed:
        query = query.where(FAILED)
    return list(await session.scalars(query))
