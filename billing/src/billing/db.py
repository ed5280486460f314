"""Database plumbing: the declarative base (with a naming convention), engines, sessions."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import MetaData, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

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


async def lock_row(session: AsyncSession, model: type[_Row], row_id: uuid.UUID) -> _Row | None:
    """The row, locked (`SELECT … FOR UPDATE`) until the transaction ends, and read afresh."""
    return await session.scalar(
        select(model)
        .where(model.id == row_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
