"""Reads changed rows from the admin database (read-only): films, plans with their film ids, promo
codes and personal discounts with their plan ids, and deletion tombstones, in (changed_at, key)
order so a batch can be resumed exactly where it ended.

The tables are the admin's (admin/catalog/models.py): catalog_film, catalog_plan,
catalog_plan_films, catalog_promo_code(_plans), catalog_personal_discount(_plans),
catalog_deletion_log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

FILMS = "films"
PLANS = "plans"
PROMO_CODES = "promo_codes"
PERSONAL_DISCOUNTS = "personal_discounts"
DELETIONS = "deletions"
# Films before plans (a plan names its films), discounts after plans (they name plans), deletions
# last (a deleted film has already left its plans' film lists, which bumped those plans; a promo
# code made again under a new id has already taken its code over in billing).
STREAMS = (FILMS, PLANS, PROMO_CODES, PERSONAL_DISCOUNTS, DELETIONS)
# Deletion log kinds -> the table that may hold the object again (re-created with the same id).
_DELETED_KINDS = {
    "film": "catalog_film",
    "plan": "catalog_plan",
    "promo_code": "catalog_promo_code",
    "personal_discount": "catalog_personal_discount",
}


class AdminDatabaseUnavailable(Exception):
    """The admin database did not answer; the pass is retried later."""


@dataclass(frozen=True)
class Row:
    """One change to push: `key` orders it (with `changed_at`) and identifies it in the state."""

    stream: str
    key: str
    changed_at: datetime
    data: dict[str, Any]


_FILM_COLUMNS = "f.id, f.title, f.active, f.updated_at AS changed_at"
_PLAN_COLUMNS = """
    p.id, p.name, p.description, p.price_amount, p.currency, p.period_unit, p.period_count,
    p.refund_window_days, p.active, p.all_films, p.updated_at AS changed_at,
    COALESCE(
        (SELECT array_agg(pf.film_id::text ORDER BY pf.film_id)
         FROM catalog_plan_films pf WHERE pf.plan_id = p.id),
        '{}'
    ) AS film_ids
"""
_DISCOUNT_COLUMNS = """
    {a}.id, {a}.percent_off, {a}.amount_off, NULLIF({a}.currency, '') AS currency, {a}.all_plans,
    {a}.active, {a}.updated_at AS changed_at,
    COALESCE(
        (SELECT array_agg(l.plan_id::text ORDER BY l.plan_id)
         FROM {table}_plans l WHERE l.{fk} = {a}.id),
        '{{}}'
    ) AS plan_ids
"""
_PROMO_COLUMNS = (
    _DISCOUNT_COLUMNS.format(a="c", table="catalog_promo_code", fk="promocode_id")
    + """, c.code, c.duration, c.duration_periods, c.valid_from, c.valid_until,
    c.max_redemptions, c.max_per_user, c.first_purchase_only"""
)
_PERSONAL_COLUMNS = (
    _DISCOUNT_COLUMNS.format(a="pd", table="catalog_personal_discount", fk="personaldiscount_id")
    + ", pd.user_id, pd.valid_until, pd.note"
)
_EXISTS_AGAIN = "\n".join(
    f"        WHEN '{kind}' THEN EXISTS (SELECT 1 FROM {table} x WHERE x.id = d.object_id)"  # noqa: S608
    for kind, table in _DELETED_KINDS.items()
)
_DELETION_COLUMNS = f"""
    d.id, d.model, d.object_id, d.deleted_at AS changed_at,
    CASE d.model
{_EXISTS_AGAIN}
        ELSE FALSE
    END AS exists_again
"""

# stream -> (select list, table alias, timestamp column, key column, key type)
_QUERIES = {
    FILMS: (_FILM_COLUMNS, "catalog_film f", "f.updated_at", "f.id", "uuid"),
    PLANS: (_PLAN_COLUMNS, "catalog_plan p", "p.updated_at", "p.id", "uuid"),
    PROMO_CODES: (_PROMO_COLUMNS, "catalog_promo_code c", "c.updated_at", "c.id", "uuid"),
    PERSONAL_DISCOUNTS: (
        _PERSONAL_COLUMNS,
        "catalog_personal_discount pd",
        "pd.updated_at",
        "pd.id",
        "uuid",
    ),
    DELETIONS: (_DELETION_COLUMNS, "catalog_deletion_log d", "d.deleted_at", "d.id", "bigint"),
}


def _sql(stream: str, *, resume: bool) -> str:
    columns, table, ts, key, key_type = _QUERIES[stream]
    where = (
        f"({ts}, {key}) > (%(after_ts)s, %(after_key)s::{key_type})"
        if resume
        else (f"{ts} >= %(since)s")
    )
    # Both forms walk the (timestamp, key) index in order.
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {ts}, {key} LIMIT %(limit)s"  # noqa: S608


def _conninfo(url: str) -> str:
    # Accept SQLAlchemy-style URLs too (postgresql+psycopg://): libpq knows only postgresql://.
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class AdminReader:
    """A read-only connection to the admin database, reopened after a failure."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = _conninfo(database_url)
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name="etl",
                # Every statement runs read-only: this worker never writes the admin's data.
                options="-c default_transaction_read_only=on",
                row_factory=dict_row,
            )
        return self._conn

    def fetch(
        self,
        stream: str,
        *,
        since: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Row]:
        """Up to `limit` rows of `stream` changed at or after `since`, strictly after `after`."""
        params = {"since": since, "limit": limit, "after_ts": None, "after_key": None}
        if after is not None:
            params["after_ts"], params["after_key"] = after
        try:
            rows = self._connection().execute(_sql(stream, resume=after is not None), params)
            return [_to_row(stream, record) for record in rows.fetchall()]
        except psycopg.Error as exc:
            # Down, restarting, or not migrated yet: the pass is retried later either way.
            self.close()
            raise AdminDatabaseUnavailable(str(exc).strip()) from exc

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _to_row(stream: str, record: dict[str, Any]) -> Row:
    changed_at: datetime = record.pop("changed_at").astimezone(UTC)
    key = str(record["id"])
    if stream == FILMS:
        data = {"id": key, "title": record["title"], "active": record["active"]}
    elif stream == PLANS:
        data = {
            "id": key,
            "name": record["name"],
            "description": record["description"],
            "price_amount": record["price_amount"],
            "currency": record["currency"],
            "period_unit": record["period_unit"],
            "period_count": record["period_count"],
            "refund_window_days": record["refund_window_days"],
            "active": record["active"],
            "all_films": record["all_films"],
            "film_ids": list(record["film_ids"]),
        }
    elif stream in (PROMO_CODES, PERSONAL_DISCOUNTS):
        data = {
            **{name: _plain(value) for name, value in record.items()},
            "id": key,
            "plan_ids": list(record["plan_ids"]),
        }
    else:
        data = {
            "model": record["model"],
            "object_id": str(record["object_id"]),
            "exists_again": record["exists_again"],
        }
    return Row(stream=stream, key=key, changed_at=changed_at, data=data)


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601 in UTC, UUIDs as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
