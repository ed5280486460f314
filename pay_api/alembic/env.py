"""Alembic environment of pay_api. The URL comes from (first found): `-x url=...`, the
`sqlalchemy.url` option set by a caller (tests), PAY_API_DATABASE_URL, the offline default."""

from __future__ import annotations

import os
from logging.config import fileConfig

import pay_api.flags.models  # noqa: F401 - registers the table
import pay_api.outbox  # noqa: F401
import pay_api.payments.card_setups  # noqa: F401
import pay_api.payments.models  # noqa: F401
import pay_api.refunds.models  # noqa: F401
import pay_api.webhooks.models  # noqa: F401
from alembic import context
from pay_api.db import Base
from sqlalchemy import create_engine, pool

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cinema_pay_api"

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("PAY_API_DATABASE_URL")
        or DEFAULT_URL
    )


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
