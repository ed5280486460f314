"""pay_api's rows for payments and the user's Stripe Customer."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from pay_api.db import Base, TimestampMixin

# `unknown`: Stripe's answer to a confirmation was lost (it may or may not have charged); any news
# from Stripe about the intent moves it on (see payments/state.py).
PAYMENT_STATUSES = ("pending", "processing", "unknown", "succeeded", "canceled", "failed")
FINAL_PAYMENT_STATUSES = frozenset({"succeeded", "canceled", "failed"})


class Customer(TimestampMixin, Base):
    """One Stripe Customer per user, created once and reused (also for renewals)."""

    __tablename__ = "customers"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The card the user last paid with on a page (saved off-session): renewals charge it.
    default_payment_method_id: Mapped[str | None] = mapped_column(String(255))


class Payment(TimestampMixin, Base):
    """A payment billing asked for; its id is billing's payment id."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'processing', 'unknown', 'succeeded', 'canceled', 'failed')",
            name="status_known",
        ),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refund_cap"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # what is charged (billing's net)
    currency: Mapped[str] = mapped_column(String(3))
    # For the page: the price before a discount, the discount and its code (billing computes them).
    gross_amount: Mapped[int | None] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    promo_code: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    return_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Stored (and committed) before the intent can be confirmed: see payments/service.py.
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_status: Mapped[str | None] = mapped_column(String(40))
    # The payment method of the latest confirmation, and how many confirmations we sent.
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    confirm_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Renewals: billing's attempt number last confirmed off-session (each is confirmed once).
    off_session_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    # Stripe's refunded total as we know it: our succeeded refunds + `refunded_outside`.
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # Refunded outside pay_api (Stripe's Dashboard): see refunds/totals.py.
    refunded_outside: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The request id of billing's call that registered it (the purchase): every event about the
    # payment carries it back, so one purchase is followed across services by one id.
    request_id: Mapped[str | None] = mapped_column(String(200))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_PAYMENT_STATUSES
