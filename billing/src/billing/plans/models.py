"""Films and plans, as pushed by etl from the admin panel. Never deleted: deactivated."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing.db import Base


class Film(Base):
    __tablename__ = "films"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("price_amount > 0", name="price_positive"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
        CheckConstraint("period_unit IN ('month', 'day')", name="period_unit"),
        CheckConstraint("period_count > 0", name="period_count_positive"),
        CheckConstraint("refund_window_days >= 0", name="refund_window_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    price_amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217, lower case (Stripe's spelling)
    period_unit: Mapped[str] = mapped_column(String(8))
    period_count: Mapped[int] = mapped_column(Integer)
    refund_window_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    all_films: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    films: Mapped[list[PlanFilm]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="PlanFilm.film_id"
    )

    @property
    def film_ids(self) -> list[uuid.UUID]:
        return [link.film_id for link in self.films]


class PlanFilm(Base):
    """A film a plan covers. No foreign key to films: etl may push a plan before its films."""

    __tablename__ = "plan_films"

    plan_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("plans.id"), primary_key=True
    )
    film_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, index=True)
