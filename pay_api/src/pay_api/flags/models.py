"""One row per (kind, Stripe object): seen again, it counts up instead of adding rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from pay_api.db import Base, utcnow


class ManagerFlag(Base):
    __tablename__ = "manager_flags"
    __table_args__ = (UniqueConstraint("kind", "stripe_object_id", name="uq_manager_flags_object"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # object_mismatch | object_missing | diverged_from_stripe (see flags/service.py)
    kind: Mapped[str] = mapped_column(String(40))
    stripe_object_id: Mapped[str] = mapped_column(String(255))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # Where the object came from: webhook:<event type>, refresh, charge, refund...
    source: Mapped[str] = mapped_column(String(120))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
