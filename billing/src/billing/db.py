"""Database plumbing: the declarative base (with a naming convention), engines, sessions."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import MetaData, event, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from billing import clock

# Stable constraint names, so migrations can refer to (and drop) them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sql_list(values: tuple[str, ...]) -> str:
    """Statuses as SQL spells a list in the tables' CHECKs and partial indexes: `'a', 'b'`."""
    return ", ".join(f"'{v}'" for v in values)


def utcnow() -> datetime:
    """Billing's time: the one clock (billing.clock), shifted forward on a test stack."""
    return clock.now()


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def make_engine(url: str, *, pool_size: int, max_overflow: int) -> AsyncEngine:
    """An asyncpg engine; connections are checked before use so a restarted database heals."""
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, from the app's pool."""
    session = request.app.state.resources.sessionmaker()
    try:
        yield session
    finally:
        try:
            await session.close()
        except DBAPIError:
            # The connection died under the request (PostgreSQL restarted, the backend was
            # terminated): nothing is left to roll back; drop it from the pool and go on.
            logger.warning("database connection lost while closing a session")
            await session.invalidate()


SessionDep = Annotated[AsyncSession, Depends(get_session)]


_Row = TypeVar("_Row")


# The rows this session's transaction holds `FOR UPDATE` (model, id): a second `lock_row` of one
# of them is answered from the session without a round trip. Forgotten when any transaction or
# savepoint of the session ends (a savepoint rolled back releases the locks taken inside it).
# --- writes held for one statement -----------------------------------------------------------

# session.info keys of the lists held by `written_together`, and what a commit would lose.
_HELD: dict[str, str] = {}


def holding(key: str, what: str) -> str:
    """Register `key` as a list `written_together` may hold (`what`: its rows, for the error of a
    commit that would lose them); returns the key."""
    _HELD[key] = what
    return key


@asynccontextmanager
async def written_together(session: AsyncSession, key: str, statement) -> AsyncIterator[None]:
    """Inside, the rows callers append to `session.info[key]` (a `holding` key) are held and
    written at the end with `statement` in one call, in the session's transaction (a batch of
    renewals applies up to a hundred answers in one transaction: one statement instead of the
    ORM's unit of work, or a statement, per row). Nothing inside may read those rows back, nor
    roll a savepoint back (its rows would stay held); a commit while rows are held is refused
    (`_nothing_held`), and the transaction changes nothing."""
    session.info[key] = []
    try:
        yield
        rows = session.info[key]
        if rows:
            await session.execute(statement, rows)
    finally:
        del session.info[key]


@event.listens_for(Session, "before_commit")
def _nothing_held(session: Session) -> None:
    for key, what in _HELD.items():
        if session.info.get(key):
            raise RuntimeError(f"a commit inside written_together would lose {what}")


_LOCKED_ROWS = "billing.locked_rows"


@event.listens_for(Session, "after_transaction_end")
def _forget_locked_rows(session: Session, transaction) -> None:
    session.info.pop(_LOCKED_ROWS, None)


def held_row(session: AsyncSession, model: type[_Row], row_id) -> _Row | None:
    """The row if this session holds it loaded (nothing expired), else None — without a query
    and without `AsyncSession.get`'s hop through a greenlet (a batch asks for each of its rows
    several times)."""
    sync = session.sync_session
    row = sync.identity_map.get(sync.identity_key(model, row_id))
    if row is None or inspect(row).expired_attributes:
        return None
    return row


async def lock_row(session: AsyncSession, model: type[_Row], row_id: uuid.UUID) -> _Row | None:
    """The row, locked (`SELECT … FOR UPDATE`) until the transaction ends, and read afresh (a row
    this transaction locked already is as fresh as it gets: nobody else can change it)."""
    if (model, row_id) in session.info.get(_LOCKED_ROWS, ()):
        row = held_row(session, model, row_id) or await session.get(model, row_id)
        if row is not None:
            return row
    row = await session.scalar(
        select(model)
        .where(model.id == row_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is not None:
        session.info.setdefault(_LOCKED_ROWS, set()).add((model, row_id))
    return row


async def lock_rows(session: AsyncSession, model: type[_Row], row_ids) -> list[_Row]:
    """`lock_row` for many rows in one statement, locked in id order (two transactions locking
    overlapping sets in the same order never wait on each other in a circle)."""
    rows = list(
        await session.scalars(
            select(model)
            .where(model.id.in_(sorted(set(row_ids))))
            .order_by(model.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    session.info.setdefault(_LOCKED_ROWS, set()).update((model, row.id) for row in rows)
    return rows
