"""Subscriptions: a user's hold of a plan, period by period. Their status is written only by
`billing.subscriptions.state`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, sql_list

SUBSCRIPTION_STATUSES = (
    "incomplete",  # waiting for the first payment
    "incomplete_expired",  # the first payment never completed; the user may buy again
    "active",
    "past_due",  # a renewal failed; access kept during a grace period
    "suspended",  # a renewal's retries and grace ran out; no access, the plan still held
    "canceled",  # auto-renew off; access until current_period_end
    "expired",  # the paid period ended
    "refunded",  # ended at once by a refund
)
# Statuses that give access while the period lasts.
PAID_STATUSES = ("active", "past_due", "canceled")
# At most one of these per (user, plan): the partial unique index below.
LIVE_STATUSES = ("incomplete", *PAID_STATUSES, "suspended")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(SUBSCRIPTION_STATUSES)})", name="status"),
        # The reports' churn by period.
        Index(
            "ix_subscriptions_ended_at", "ended_at", postgresql_where=text("ended_at IS NOT NULL")
        ),
        CheckConstraint(
            f"status NOT IN ({sql_list(PAID_STATUSES)}) OR (current_period_start IS NOT NULL "
            "AND current_period_end > current_period_start)",
            name="paid_has_period",
        ),
        CheckConstraint(
            "status <> 'past_due' OR grace_until IS NOT NULL", name="past_due_has_grace"
        ),
        Index(
            "uq_subscriptions_live_user_plan",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=text(f"status IN ({sql_list(LIVE_STATUSES)})"),
        ),
        Index(
            "ix_subscriptions_period_end_paid",
            "current_period_end",
            postgresql_where=text(f"status IN ({sql_list(PAID_STATUSES)})"),
        ),
        # The worker's "whose grace ran out" (renewals/service.py), every pass: without it, a
        # scan of every subscription (13 ms a pass with 100k).
        Index(
            "ix_subscriptions_grace_past_due",
            "grace_until",
            postgresql_where=text("status = 'past_due'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    plan_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(24))
    # The plan's terms when it was bought (a later edit of the plan does not change them).
    period_unit: Mapped[str] = mapped_column(String(8))
    period_count: Mapped[int] = mapped_column(Integer)
    refund_window_days: Mapped[int] = mapped_column(Integer)
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set when something happened a manager must look at (e.g. a refund that ended it failed).
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    attention_note: Mapped[str | None] = mapped_column(Text)
    # Dunning (a renewal that did not go through): since when, access kept until, and why.
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    grace_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_decline_code: Mapped[str | None] = mapped_column(Text)
    last_decline_message: Mapped[str | None] = mapped_column(Text)
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
