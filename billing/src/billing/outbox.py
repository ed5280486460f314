"""Transactional outbox: notifications written in the transaction that caused them.

Today the one consumer is the access cache: a change of a user's subscriptions (or of the catalog)
must drop their cached access decisions. The request invalidates right after its commit (fast path);
the outbox row, committed atomically with the change, lets the worker do it again if the process died
between commit and Redis — so a stale "allowed" can never outlive the crash by more than a pass.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base

if TYPE_CHECKING:
    from billing.access.cache import AccessCache

logger = logging.getLogger(__name__)

_CHANGED_USERS = "billing.access_changed_users"
_CATALOG_CHANGED = "billing.catalog_changed"

TOPIC_ACCESS_CHANGED = "access.changed"
TOPIC_CATALOG_CHANGED = "catalog.changed"
# An email to a user (billing/notifications/emails.py), sent by the worker over SMTP.
TOPIC_EMAIL = "email"


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_undelivered", "id", postgresql_where=text("delivered_at IS NULL")),
        Index(  # pruning by age
            "ix_outbox_delivered_at",
            "delivered_at",
            postgresql_where=text("delivered_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def note_access_change(session: AsyncSession, user_id: uuid.UUID, reason: str) -> None:
    """Record, in this transaction, that the user's access may have changed."""
    session.info.setdefault(_CHANGED_USERS, set()).add(user_id)
    session.add(
        OutboxMessage(
            topic=TOPIC_ACCESS_CHANGED, payload={"user_id": str(user_id), "reason": reason}
        )
    )


def note_catalog_change(session: AsyncSession, reason: str) -> None:
    """Record, in this transaction, that plans or films changed (every decision may change)."""
    session.info[_CATALOG_CHANGED] = True
    session.add(OutboxMessage(topic=TOPIC_CATALOG_CHANGED, payload={"reason": reason}))


async def commit(session: AsyncSession, cache: AccessCache) -> None:
    """Commit, then drop the access decisions the transaction made stale."""
    users: set[uuid.UUID] = session.info.pop(_CHANGED_USERS, set())
    catalog_changed: bool = session.info.pop(_CATALOG_CHANGED, False)
    await session.commit()
    try:
        await cache.invalidate(users=users, everything=catalog_changed)
    except RedisError:
        # The outbox rows committed above make the worker retry this.
        logger.warning("access cache invalidation failed; the worker will retry", exc_info=True)
