"""CSV exports of payments and refunds, streamed: rows are read through a server-side cursor and
written out a batch at a time, so an export of any size holds one batch in memory."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.errors import Unprocessable
from billing.money import MINOR_DIGITS
from billing.payments.models import REFUND_STATUSES
from billing.payments.state import PAYMENT_STATUSES

BATCH_ROWS = 1000


@dataclass(frozen=True, kw_only=True)
class ExportFilter:
    """What a manager asked for; every field optional. Dates are UTC and inclusive."""

    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    currency: str | None = None
    plan_id: uuid.UUID | None = None

    def where(self, *, table: str) -> tuple[str, dict[str, Any]]:
        clauses, params = ["true"], {}
        if self.date_from is not None:
            clauses.append(f"{table}.created_at >= :date_from")
            params["date_from"] = self.date_from
        if self.date_to is not None:
            clauses.append(f"{table}.created_at < :date_to_excl")
            params["date_to_excl"] = self.date_to + timedelta(days=1)
        if self.status is not None:
            clauses.append(f"{table}.status = :status")
            params["status"] = self.status
        if self.currency is not None:
            clauses.append(f"{table}.currency = :currency")
            params["currency"] = self.currency
        if self.plan_id is not None:
            clauses.append("p.plan_id = :plan_id")
            params["plan_id"] = self.plan_id
        return " AND ".join(clauses), params


def check_filter(filters: ExportFilter, *, statuses: Sequence[str]) -> ExportFilter:
    """422 for a status this export does not know or dates the wrong way round."""
    if filters.status is not None and filters.status not in statuses:
        raise Unprocessable(f"status must be one of: {', '.join(statuses)}.")
    if filters.date_from and filters.date_to and filters.date_to < filters.date_from:
        raise Unprocessable("date_to is before date_from.")
    return filters


def units(amount: int, currency: str) -> str:
    """999 usd → "9.99"; 1000 jpy → "1000" (the amount as people write it). Integer arithmetic:
    this runs twice per exported row."""
    digits = MINOR_DIGITS.get(currency.lower(), 2)
    if not digits:
        return str(amount)
    whole, fraction = divmod(amount, 10**digits)  # amounts are never negative (CHECKs)
    return f"{whole}.{fraction:0{digits}d}"


# Ids and times are turned into text by PostgreSQL (in its own process) rather than row by row
# here: UTC, ISO 8601 with microseconds.
_ISO = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


PAYMENT_COLUMNS = (
    "payment_id", "created_at", "succeeded_at", "user_id", "subscription_id", "plan_id",
    "plan_name", "kind", "status", "currency", "amount", "amount_minor", "refunded",
    "refunded_minor", "stripe_payment_intent_id", "failure_code",
)  # fmt: skip

_PAYMENTS = """
SELECT p.id::text, {created} AS created_at, {succeeded} AS succeeded_at, p.user_id::text,
       p.subscription_id::text, p.plan_id::text, pl.name AS plan_name, p.kind, p.status,
       p.currency, p.amount, p.refunded_amount, p.stripe_payment_intent_id, p.failure_code
FROM payments p JOIN plans pl ON pl.id = p.plan_id
WHERE {where}
ORDER BY p.created_at, p.id
"""


def _payment_row(r: Any) -> list[Any]:
    return [
        r.id, r.created_at, r.succeeded_at or "", r.user_id, r.subscription_id, r.plan_id,
        r.plan_name, r.kind, r.status, r.currency,
        units(r.amount, r.currency), r.amount, units(r.refunded_amount, r.currency),
        r.refunded_amount, r.stripe_payment_intent_id or "", r.failure_code or "",
    ]  # fmt: skip


REFUND_COLUMNS = (
    "refund_id", "created_at", "updated_at", "payment_id", "user_id", "plan_id", "status",
    "currency", "amount", "amount_minor", "initiated_by", "reason", "stripe_refund_id",
    "failure_code",
)  # fmt: skip

_REFUNDS = """
SELECT r.id::text, {created} AS created_at, {updated} AS updated_at, r.payment_id::text,
       r.user_id::text, p.plan_id::text, r.status, r.currency, r.amount, r.initiated_by, r.reason,
       r.stripe_refund_id, r.failure_code
FROM refunds r JOIN payments p ON p.id = r.payment_id
WHERE {where}
ORDER BY r.created_at, r.id
"""


def _refund_row(r: Any) -> list[Any]:
    return [
        r.id, r.created_at, r.updated_at, r.payment_id, r.user_id,
        r.plan_id, r.status, r.currency, units(r.amount, r.currency), r.amount, r.initiated_by,
        r.reason, r.stripe_refund_id or "", r.failure_code or "",
    ]  # fmt: skip


@dataclass(frozen=True)
class Export:
    columns: tuple[str, ...]
    sql: str
    table: str
    row: Callable[[Any], list[Any]]
    statuses: tuple[str, ...]


PAYMENTS = Export(PAYMENT_COLUMNS, _PAYMENTS, "p", _payment_row, PAYMENT_STATUSES)
REFUNDS = Export(REFUND_COLUMNS, _REFUNDS, "r", _refund_row, REFUND_STATUSES)


async def stream_csv(
    *, sessionmaker: async_sessionmaker[AsyncSession], export: Export, filters: ExportFilter
) -> AsyncIterator[bytes]:
    """The header line, then the rows a batch at a time. Owns its session: a streamed answer
    outlives the request's dependencies."""
    where, params = filters.where(table=export.table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export.columns)
    yield buffer.getvalue().encode()
    async with sessionmaker() as session:
        sql = export.sql.format(
            where=where,
            created=_ISO.format(f"{export.table}.created_at"),
            succeeded=_ISO.format("p.succeeded_at"),
            updated=_ISO.format("r.updated_at"),
        )
        result = await session.stream(text(sql).execution_options(yield_per=BATCH_ROWS), params)
        async for batch in result.partitions(BATCH_ROWS):
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(export.row(r) for r in batch)
            yield buffer.getvalue().encode()
