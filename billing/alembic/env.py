"""Alembic environment of billing: the URL comes from BILLING_DATABASE_URL (async, asyncpg)."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from billing.models import metadata
from sqlalchemy.ext.asyncio import create_async_engine

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/cinema_billing"


def database_url() -> str:
    url = os.environ.get("BILLING_DATABASE_URL", DEFAULT_URL)
    # Accept a plain postgresql:// URL too; billing always speaks asyncpg.
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
