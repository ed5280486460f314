"""Transactional outbox: notifications written in the transaction that caused them.

Today the one consumer is the access cache: a change of a user's subscriptions (or of the catalog)
must drop what every billing process holds in memory about it. `commit` sends the PostgreSQL
notifications inside the transaction, so they exist exactly when the change committed (see
`billing.access.cache`), and drops the entries of this process at once. The outbox rows are the
durable record of the same notifications; the worker sends them again when it delivers them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from billing.access.cache import CATALOG_PAYLOAD, NOTIFY_SQL, user_payload
from billing.db import Base, holding, written_together

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


# A batch's rows in one statement, built once (no RETURNING: nothing reads their ids).
_INSERT_ROWS = insert(OutboxMessage.__table__)
_HELD_ROWS = holding("billing.held_outbox_rows", "outbox rows")


def add(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """A row in this transaction's outbox: added to the session, or held for one statement inside
    `rows_written_together`."""
    held = session.info.get(_HELD_ROWS)
    if held is not None:
        held.append({"topic": topic, "payload": payload, "attempts": 0})
    else:
        session.add(OutboxMessage(topic=topic, payload=payload))


def rows_written_together(session: AsyncSession):
    """Inside, the outbox rows the transaction adds are held and written at the end in one
    statement (`db.written_together`): a batch of renewals adds two per renewal, and the ORM's
    unit of work cost more than the rest of each row's write (bench/README.md). Nothing inside
    reads the outbox."""
    return written_together(session, _HELD_ROWS, _INSERT_ROWS)


def note_access_change(session: AsyncSession, user_id: uuid.UUID, reason: str) -> None:
    """Record, in this transaction, that the user's access may have changed."""
    session.info.setdefault(_CHANGED_USERS, set()).add(user_id)
    add(session, TOPIC_ACCESS_CHANGED, {"user_id": str(user_id), "reason": reason})


def note_catalog_change(session: AsyncSession, reason: str) -> None:
    """Record, in this transaction, that plans or films changed (every decision may change)."""
    session.info[_CATALOG_CHANGED] = True
    add(session, TOPIC_CATALOG_CHANGED, {"reason": reason})


async def notify_access_changes(
    session: AsyncSession, *, users: Iterable[uuid.UUID | str] = (), catalog: bool = False
) -> None:
    """Tell every billing process, when this transaction commits, what its access data lost."""
    payloads = [user_payload(user) for user in users]
    if catalog:
        payloads.append(CATALOG_PAYLOAD)
    if payloads:
        await session.execute(text(NOTIFY_SQL), {"payloads": payloads})


async def commit(session: AsyncSession, cache: AccessCache) -> None:
    """Commit with the access notifications the transaction owes, then forget locally too."""
    users: set[uuid.UUID] = session.info.pop(_CHANGED_USERS, set())
    catalog_changed: bool = session.info.pop(_CATALOG_CHANGED, False)
    await notify_access_changes(session, users=users, catalog=catalog_changed)
    await session.commit()
    # This process need not wait for its own message (read your writes at once).
    cache.invalidate(users=users, everything=catalog_changed)
