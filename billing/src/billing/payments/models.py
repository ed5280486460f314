"""Payments and their refunds (money going back, reserved on the payment from the moment it is
asked), the append-only ledger, and the inbox of pay_api events already applied."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    FetchedValue,
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
from billing.payments.state import OPEN_PAYMENT_STATUSES, PAYMENT_STATUSES, REFUNDABLE_STATUSES


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(PAYMENT_STATUSES)})", name="status"),
        CheckConstraint("kind IN ('first', 'renewal')", name="kind"),
        # `amount` is what is charged: the net after a discount; 0 for a free (100%-off) payment,
        # which billing settles itself without asking Stripe.
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint(
            "discount_amount >= 0 AND gross_amount - discount_amount = amount",
            name="net_is_gross_less_discount",
        ),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
        # Invariant 2: refunded (succeeded + pending) never exceeds what was charged.
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        CheckConstraint(
            f"refunded_amount = 0 OR status IN ({sql_list(REFUNDABLE_STATUSES)}, 'refunded')",
            name="refunds_only_after_charge",
        ),
        # Invariant 1: at most one open first payment per (user, plan).
        Index(
            "uq_payments_open_first_user_plan",
            "user_id",
            "plan_id",
            unique=True,
            postgresql_where=text(
                f"kind = 'first' AND status IN ({sql_list(OPEN_PAYMENT_STATUSES)})"
            ),
        ),
        # Renewals: ONE payment per (subscription, period start), written before any call.
        Index(
            "uq_payments_renewal_period",
            "subscription_id",
            "period_start",
            unique=True,
            postgresql_where=text("kind = 'renewal'"),
        ),
        CheckConstraint(
            "kind <> 'renewal' OR (period_start IS NOT NULL AND period_end > period_start)",
            name="renewal_has_period",
        ),
        Index(
            "ix_payments_renewal_next_charge",
            "next_charge_at",
            postgresql_where=text(
                "kind = 'renewal' AND status IN ('created', 'pending') "
                "AND next_charge_at IS NOT NULL"
            ),
        ),
        Index("ix_payments_user_created", "user_id", "created_at"),
        # The admin's reports read periods by time (billing/reports/figures.py, export.py).
        Index("ix_payments_created_at", "created_at"),
        Index(
            "ix_payments_succeeded_at",
            "succeeded_at",
            postgresql_where=text("succeeded_at IS NOT NULL"),
        ),
        Index(
            "ix_payments_period_end", "period_end", postgresql_where=text("period_end IS NOT NULL")
        ),
        Index(
            "ix_payments_open_next_check",
            "next_check_at",
            postgresql_where=text(f"status IN ({sql_list(OPEN_PAYMENT_STATUSES)})"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("subscriptions.id"), index=True
    )
    plan_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("plans.id"))
    kind: Mapped[str] = mapped_column(String(16), default="first")
    status: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units: the net, what is charged
    # The price before discounts. An insert without it (no discount) gets amount + discount from
    # a trigger (migration promotions_2), so writers that know nothing of discounts stay right.
    gross_amount: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    promo_code: Mapped[str | None] = mapped_column(Text)  # the code that gave the discount
    currency: Mapped[str] = mapped_column(String(3))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # pending + succeeded
    description: Mapped[str] = mapped_column(Text, default="")
    payment_url: Mapped[str | None] = mapped_column(Text)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    # How recent the news was that made it `processing` (pay_api's `occurred_at` of the event, or
    # when billing asked): only newer news may send it back to `pending` (see payments/state.py).
    processing_reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Deadline: not paid by then → canceled at pay_api and `expired`.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Worker bookkeeping: when to ask pay_api next, how often we asked, who works on it now.
    next_check_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Renewals: when the worker charges it next (None: it waits for the user — a new card or
    # 3-D Secure — or for nothing more), and how many attempts were sent to pay_api.
    next_charge_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    charge_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The period this payment pays for (a first payment: set when it succeeds; a renewal: from
    # the start, the old period's end to the next).
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerEntry(Base):
    """Every movement of money; rows are never updated or deleted (a trigger refuses it)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('charge', 'refund', 'reversal')", name="kind"),
        # A free (100%-off) payment still writes its charge row, of 0.
        CheckConstraint("amount > 0 OR (kind = 'charge' AND amount = 0)", name="amount_positive"),
        CheckConstraint("(kind = 'charge') = (refund_id IS NULL)", name="refund_rows_name_refund"),
        Index("ix_ledger_entries_created_at", "created_at"),  # the reports' money by period
        # Invariant 1: at most one succeeded charge per payment.
        Index(
            "uq_ledger_one_charge_per_payment",
            "payment_id",
            unique=True,
            postgresql_where=text("kind = 'charge'"),
        ),
        Index(
            "uq_ledger_one_row_per_refund_kind",
            "refund_id",
            "kind",
            unique=True,
            postgresql_where=text("refund_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id"), index=True
    )
    refund_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("refunds.id")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units, always positive; kind signs it
    currency: Mapped[str] = mapped_column(String(3))
    # A charge row's price before its discount (charges only): gross - discount = amount.
    gross_amount: Mapped[int | None] = mapped_column(BigInteger)
    discount_amount: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProcessedEvent(Base):
    """Inbox: a pay_api event id is inserted in the transaction that applies it, once."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_received_at", "received_at"),)  # pruning by age

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    object: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(24))
    applied: Mapped[bool]
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


REFUND_STATUSES = ("pending", "succeeded", "failed", "canceled")


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'canceled')", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("initiated_by IN ('user', 'admin', 'stripe')", name="initiated_by"),
        Index("ix_refunds_created_at", "created_at"),  # the refunds export by date
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    initiated_by: Mapped[str] = mapped_column(String(16))
    # The refund ended the subscription (a failure then needs a manager, not a silent restore).
    ends_subscription: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_refund_id: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(Text)
    # When pay_api acknowledged it; until then the worker (re)sends it (idempotent by id).
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_check_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
