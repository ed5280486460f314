"""Refund rows: written before Stripe is asked, keyed by billing's refund id."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from pay_api.db import Base, TimestampMixin

REFUND_STATUSES = ("pending", "succeeded", "failed", "canceled")
FINAL_REFUND_STATUSES = frozenset({"succeeded", "failed", "canceled"})
# Refunds that count against what is left of the payment.
OPEN_OR_DONE_REFUND_STATUSES = ("pending", "succeeded")


class Refund(TimestampMixin, Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'canceled')", name="status_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # When a create at Stripe was last started (committed before the call): see
    # refunds.service.make_at_stripe for why a retry waits out the request that may be in flight.
    stripe_create_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_REFUND_STATUSES
