"""Client idempotency (`Idempotency-Key`) for POSTs that create payments or refunds.

The key's row is inserted, uncommitted, in a transaction of its own that stays open while the request
does its work (which commits on other connections). The unique index (owner, scope, key) is the lock:
a concurrent request with the same key blocks in its own INSERT until the first one finishes; it then
finds the stored answer (same body → same status and body) or, if the first failed and rolled back,
becomes the one that does the work. Error answers are not stored: nothing was done, the key is free.
A different request under a stored key → 422 `idempotency_key_reused`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base
from billing.errors import IdempotencyKeyReused, Unprocessable

MAX_KEY_LENGTH = 255


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("owner", "scope", "key"),
        Index("ix_idempotency_keys_created_at", "created_at"),  # pruning by age
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))  # user id, or "service:<name>"
    scope: Mapped[str] = mapped_column(String(64))  # which endpoint
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Unprocessable(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.")
    return key


async def run_once(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: str,
    scope: str,
    key: str | None,
    request: dict[str, Any],
    work: Callable[[], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any]:
    """Run `work` (→ status, JSON-able body) once per key; replay its answer for the same key."""
    key = validate_key(key)
    if key is None:
        return await work()
    fingerprint = request_hash(request)
    async with sessionmaker() as lock_session, lock_session.begin():
        row_id = await lock_session.scalar(
            insert(IdempotencyKey)
            .values(owner=owner, scope=scope, key=key, request_hash=fingerprint)
            .on_conflict_do_nothing(index_elements=["owner", "scope", "key"])
            .returning(IdempotencyKey.id)
        )
        if row_id is None:
            stored = (
                await lock_session.execute(
                    select(IdempotencyKey).where(
                        IdempotencyKey.owner == owner,
                        IdempotencyKey.scope == scope,
                        IdempotencyKey.key == key,
                    )
                )
            ).scalar_one()
            if stored.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            return stored.response_status or 200, stored.response_body
        status, body = await work()
        stored = await lock_session.get(IdempotencyKey, row_id)
        stored.response_status, stored.response_body = status, body
    return status, body
