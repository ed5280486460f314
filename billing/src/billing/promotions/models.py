"""Promo codes and personal discounts (pushed by etl from the admin; never deleted: deactivated),
and the redemptions of promo codes with the counters that keep them within their limits.

The limits are the database's: a redemption is reserved by a conditional UPDATE of the code's
counter (`times_redeemed < max_redemptions`) and an upsert of the (code, user) counter
(`redeemed < max_per_user`), in the transaction that writes the payment — two buyers can never both
take the last use, whatever the interleaving.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing.db import Base, sql_list

_ONE_KIND_OF_DISCOUNT = (
    "(percent_off IS NULL) <> (amount_off IS NULL) "
    "AND (percent_off IS NULL OR percent_off BETWEEN 1 AND 100) "
    "AND (amount_off IS NULL OR (amount_off > 0 AND currency IS NOT NULL))"
)


class DiscountColumns:
    """The terms every discount carries (pricing.Terms)."""

    percent_off: Mapped[int | None] = mapped_column(Integer)
    amount_off: Mapped[int | None] = mapped_column(BigInteger)  # minor units of `currency`
    currency: Mapped[str | None] = mapped_column(String(3))


class PromoCode(DiscountColumns, Base):
    __tablename__ = "promo_codes"
    __table_args__ = (
        CheckConstraint(_ONE_KIND_OF_DISCOUNT, name="one_kind_of_discount"),
        CheckConstraint("duration IN ('once', 'repeating', 'forever')", name="duration"),
        CheckConstraint(
            "(duration = 'repeating') = (duration_periods IS NOT NULL)", name="duration_periods"
        ),
        CheckConstraint("times_redeemed >= 0", name="times_redeemed_not_negative"),
        # Users type a code case-insensitively; among active codes it names one.
        Index(
            "uq_promo_codes_active_code",
            text("lower(code)"),
            unique=True,
            postgresql_where=text("active"),
        ),  # fmt: skip
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    duration: Mapped[str] = mapped_column(String(16), default="once")
    duration_periods: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_redemptions: Mapped[int | None] = mapped_column(Integer)  # None: no limit in all
    max_per_user: Mapped[int | None] = mapped_column(Integer)  # None: no limit per user
    first_purchase_only: Mapped[bool] = mapped_column(Boolean, default=False)
    all_plans: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Reserved + confirmed redemptions; only the conditional UPDATEs in service.py move it.
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    plans: Mapped[list[PromoCodePlan]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PromoCodePlan.plan_id"
    )

    @property
    def plan_ids(self) -> list[uuid.UUID]:
        return [link.plan_id for link in self.plans]


class PromoCodePlan(Base):
    """A plan a promo code applies to. No foreign key to plans: etl may push the code first."""

    __tablename__ = "promo_code_plans"

    promo_code_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("promo_codes.id"), primary_key=True
    )
    plan_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)


class PromoCodeUser(Base):
    """How many live (reserved or confirmed) redemptions of a code one user holds: the per-user
    limit is `redeemed < max_per_user` checked by the upsert that raises it."""

    __tablename__ = "promo_code_users"
    __table_args__ = (CheckConstraint("redeemed >= 0", name="redeemed_not_negative"),)

    promo_code_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("promo_codes.id"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)


REDEMPTION_STATUSES = ("reserved", "confirmed", "released")


class Redemption(DiscountColumns, Base):
    """One use of a promo code by one payment: reserved with the payment, confirmed when it
    succeeds, released when it fails, expires or is canceled (state.py). The code's terms are
    copied here, so renewals keep what was promised even if a manager edits the code later."""

    __tablename__ = "promo_redemptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(REDEMPTION_STATUSES)})", name="status"),
        CheckConstraint(_ONE_KIND_OF_DISCOUNT, name="one_kind_of_discount"),
        Index("ix_promo_redemptions_code_created", "promo_code_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    promo_code_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("promo_codes.id")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    # The first payment it was redeemed with (one redemption per payment).
    payment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id"), unique=True
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("subscriptions.id"), index=True
    )
    code: Mapped[str] = mapped_column(Text)  # as the code was spelled when redeemed
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    duration: Mapped[str] = mapped_column(String(16))
    duration_periods: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PersonalDiscount(DiscountColumns, Base):
    """A discount support granted to one user, on every payment while it is valid."""

    __tablename__ = "personal_discounts"
    __table_args__ = (CheckConstraint(_ONE_KIND_OF_DISCOUNT, name="one_kind_of_discount"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    all_plans: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    plans: Mapped[list[PersonalDiscountPlan]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PersonalDiscountPlan.plan_id"
    )

    @property
    def plan_ids(self) -> list[uuid.UUID]:
        return [link.plan_id for link in self.plans]


class PersonalDiscountPlan(Base):
    __tablename__ = "personal_discount_plans"

    personal_discount_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("personal_discounts.id"), primary_key=True
    )
    plan_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
