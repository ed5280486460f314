"""Database access: one engine per process, short explicit transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask, current_app
from sqlalchemy import DateTime, MetaData, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from pay_api import failpoints
from pay_api.failpoints import failpoint

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Where outbox.py keeps the rows a transaction adds (written just before its commit), then the
# (id, next_attempt_at) of each row written (read after the commit: offered to `after_commit`).
OUTBOX_ROWS_KEY = "pay_api.outbox_rows"
OUTBOX_WRITTEN_KEY = "pay_api.outbox_written"
OUTBOX_SUBJECTS_KEY = "pay_api.outbox_subjects"  # what those rows are about (for crash points)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Database:
    """The engine and a session factory; `transaction()` is the only way services write."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True, pool_recycle=1800
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Called with the outbox row ids a transaction wrote, once it has committed.
        self.after_commit: list[Callable[[list[int]], None]] = []

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self._sessions() as session:
            with session.begin():
                yield session
            written = session.info.pop(OUTBOX_WRITTEN_KEY, [])
            subjects = session.info.pop(OUTBOX_SUBJECTS_KEY, set())
        if written:
            failpoint(failpoints.AFTER_COMMIT, *subjects)
            # Offered for immediate delivery: the rows due now (not those deferred on purpose).
            now = utcnow()
            outbox_ids = [row_id for row_id, due in written if due <= now]
            if outbox_ids:
                for hook in self.after_commit:
                    hook(outbox_ids)

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app: Flask, database: Database) -> None:
    app.extensions["pay_api.db"] = database


def get_db() -> Database:
    return current_app.extensions["pay_api.db"]
