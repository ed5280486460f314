"""Transactional outbox: notifications to billing, written in the transaction that changed state.

`add_*_event` inserts a row in the caller's transaction; after the commit the rows are offered to
`OutboxDispatcher` for an immediate, best-effort delivery, and `python -m pay_api.worker` delivers
whatever is left with back-off. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so any number of
workers and web processes can deliver at once; billing applies each `event_id` once.

Both deliver in batches: the rows claimed in one round go to billing in one POST
(`/internal/v1/payment-events/batch`), and each row is marked from its own result — applied or a
duplicate is delivered; billing's error for that event, or a failure of the whole POST (transport,
non-2xx, an answer that does not match), backs that row off.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    any_,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import event as orm_events
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from pay_api.auth import mint_service_token
from pay_api.config import Settings
from pay_api.db import (
    OUTBOX_ROWS_KEY,
    OUTBOX_SUBJECTS_KEY,
    OUTBOX_WRITTEN_KEY,
    Base,
    Database,
    utcnow,
)
from pay_api.logs import REQUEST_ID_HEADER, current_request_id

log = logging.getLogger(__name__)

# billing's batch endpoint: up to 100 events a POST, applied in order, one result each.
BATCH_PATH = "/internal/v1/payment-events/batch"


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "next_attempt_at", postgresql_where=text("delivered_at IS NULL")),
        Index(  # pruning by age
            "ix_outbox_delivered_at",
            "delivered_at",
            postgresql_where=text("delivered_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _add(
    session: Session,
    payload: dict[str, Any],
    request_id: str | None = None,
    *,
    subjects: tuple[Any, ...] = (),
) -> None:
    """The event's row, written with the transaction (`_write_rows`, just before its commit).
    `request_id`: sent back to billing with the event (else the request being served);
    `subjects`: the ids the event is about (a crash point after the commit may name one)."""
    now = utcnow()
    session.info.setdefault(OUTBOX_ROWS_KEY, []).append(
        {
            "event_id": uuid.UUID(payload["event_id"]),
            "payload": payload,
            "request_id": request_id or current_request_id(),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
    )
    session.info.setdefault(OUTBOX_SUBJECTS_KEY, set()).update(str(s) for s in subjects)


# One statement for a transaction's rows, built once (Core: the ORM's unit of work cost about
# as much again per row, a batch of renewals writing fifty: bench/README.md).
_INSERT_ROWS = insert(OutboxMessage.__table__).returning(
    OutboxMessage.__table__.c.id,
    OutboxMessage.__table__.c.next_attempt_at,
    sort_by_parameter_order=True,
)


@orm_events.listens_for(Session, "before_commit")
def _write_rows(session: Session) -> None:
    """The rows the transaction added, written in it as its last statement before the commit;
    their (id, next_attempt_at) kept for `Database.transaction`, which offers them for delivery
    once committed. A transaction rolled back never writes them (nothing of it is kept)."""
    rows = session.info.pop(OUTBOX_ROWS_KEY, None)
    if rows:
        written = session.execute(_INSERT_ROWS, rows).all()
        session.info.setdefault(OUTBOX_WRITTEN_KEY, []).extend(
            (row.id, row.next_attempt_at) for row in written
        )


def defer_events(session: Session, seconds: float) -> None:
    """The events added so far in this transaction wait `seconds` before their first delivery
    (and are not offered for immediate delivery): news billing has already had as an answer."""
    if seconds <= 0:
        return
    later = utcnow() + timedelta(seconds=seconds)
    for row in session.info.get(OUTBOX_ROWS_KEY, []):
        row["next_attempt_at"] = later


def add_payment_event(session: Session, payment: Any) -> None:
    """Tell billing the payment's current state (status, refunded amount, failure)."""
    _add(
        session,
        {
            "event_id": str(uuid.uuid4()),
            "object": "payment",
            "payment_id": str(payment.id),
            "refund_id": None,
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "amount_refunded": payment.amount_refunded,
            "refunded_outside": payment.refunded_outside,
            "failure_code": payment.failure_code,
            "failure_message": payment.failure_message,
            "stripe_id": payment.stripe_payment_intent_id,
            "occurred_at": utcnow().isoformat(),
        },
        request_id=payment.request_id,  # the purchase's: one id from billing's POST to here
        subjects=(payment.id, payment.user_id),
    )


def add_refund_event(session: Session, refund: Any, payment: Any) -> None:
    """Tell billing a refund's current state; `amount_refunded` is the payment's total."""
    _add(
        session,
        {
            "event_id": str(uuid.uuid4()),
            "object": "refund",
            "payment_id": str(payment.id),
            "refund_id": str(refund.id),
            "status": refund.status,
            "amount": refund.amount,
            "currency": refund.currency,
            "amount_refunded": payment.amount_refunded,
            "refunded_outside": payment.refunded_outside,
            "failure_code": refund.failure_reason if refund.status == "failed" else None,
            "failure_message": None,
            "stripe_id": refund.stripe_refund_id,
            "occurred_at": utcnow().isoformat(),
        },
        subjects=(refund.id, payment.id, payment.user_id),
    )


def backoff_seconds(attempts: int, *, maximum: float) -> float:
    """2, 4, 8 ... seconds up to `maximum`, with a little jitter so workers spread out."""
    base = min(maximum, 2.0 ** min(attempts, 20))
    return base * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not security


class BillingSender:
    """POSTs notifications to billing's batch endpoint; says, for each, whether billing has it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.billing_url.rstrip("/") + BATCH_PATH
        self.client = httpx.Client(timeout=settings.outbox_timeout_seconds)

    def send(self, messages: Sequence[OutboxMessage]) -> list[Outcome]:
        """One outcome per message, in order: delivered (billing applied it or had it already),
        or the error — billing's own for that event, or the whole POST's."""
        outcomes: list[Outcome] = []
        for chunk in self._chunks(messages):
            outcomes += self._post(chunk)
        return outcomes

    def _chunks(self, messages: Sequence[OutboxMessage]) -> Iterator[list[dict[str, Any]]]:
        """The events as billing takes them: at most `outbox_batch_size` and
        `outbox_batch_max_bytes` of JSON per POST (one event alone always goes)."""
        limit, max_bytes = self.settings.outbox_batch_size, self.settings.outbox_batch_max_bytes
        chunk: list[dict[str, Any]] = []
        size = len(_EMPTY_BATCH)
        for message in messages:
            # The purchase's request id, so billing's log lines of this event carry it.
            item = {**message.payload, "request_id": message.request_id or str(message.event_id)}
            item_size = len(_json(item)) + 1
            if chunk and (len(chunk) >= limit or size + item_size > max_bytes):
                yield chunk
                chunk, size = [], len(_EMPTY_BATCH)
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk

    def _post(self, events: list[dict[str, Any]]) -> list[Outcome]:
        token = mint_service_token(audience="billing", secret=self.settings.service_jwt_secret)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            REQUEST_ID_HEADER: current_request_id() or uuid.uuid4().hex,
        }
        try:
            response = self.client.post(
                self.url, content=_json({"events": events}), headers=headers
            )
        except httpx.HTTPError as exc:
            return _all_failed(events, f"{type(exc).__name__}: {exc}")
        if response.status_code == 413 and len(events) > 1:  # billing takes less: halve it
            half = len(events) // 2
            return self._post(events[:half]) + self._post(events[half:])
        if not 200 <= response.status_code < 300:
            return _all_failed(events, f"HTTP {response.status_code}: {response.text[:300]}")
        outcomes = _read_results(events, response)
        if outcomes is None:
            return _all_failed(
                events,
                f"HTTP {response.status_code}, an answer that does not match the batch: "
                f"{response.text[:300]}",
            )
        return outcomes

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    error: str | None = None


_EMPTY_BATCH = b'{"events":[]}'


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _all_failed(events: list[dict[str, Any]], error: str) -> list[Outcome]:
    return [Outcome(False, error[:500])] * len(events)


def _read_results(events: list[dict[str, Any]], response: httpx.Response) -> list[Outcome] | None:
    """Billing's `{"results": [...]}`, one per event in order; None when it is not that."""
    try:
        results = response.json()["results"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(results, list) or len(results) != len(events):
        return None
    outcomes = []
    for event, result in zip(events, results, strict=True):
        if not isinstance(result, dict) or result.get("event_id") != event["event_id"]:
            return None
        error = result.get("error")
        if isinstance(result.get("applied"), bool):  # applied, or billing had it already
            outcomes.append(Outcome(True))
        elif isinstance(error, dict):
            text_ = f"HTTP {error.get('status')} {error.get('code')}: {error.get('message')}"
            outcomes.append(Outcome(False, text_[:500]))
        else:
            return None
    return outcomes


def deliver_due(
    db: Database, sender: BillingSender, *, ids: list[int] | None = None, batch: int | None = None
) -> int:
    """Deliver up to `batch` due notifications (only `ids` if given) in one POST to billing's
    batch endpoint, and mark each from its own result; how many were tried."""
    with db.transaction() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None))
            # Oldest due first, in the order written: read from `ix_outbox_due`, no further than
            # the batch. Ordered by id alone, PostgreSQL sorted every due row, or walked the
            # primary key past every delivered one (22 ms a poll after 100k renewals).
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(batch or sender.settings.outbox_batch_size)
            .with_for_update(skip_locked=True)
        )
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(ids))
        else:
            query = query.where(OutboxMessage.next_attempt_at <= utcnow())
        messages = session.scalars(query).all()
        if not messages:
            return 0
        outcomes = sender.send(messages)
        now = utcnow()
        delivered = [m for m, o in zip(messages, outcomes, strict=True) if o.delivered]
        if delivered:
            # One statement for the delivered rows (not an UPDATE per row at the flush).
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
                .values(delivered_at=now, attempts=OutboxMessage.attempts + 1, last_error=None)
                .execution_options(synchronize_session=False),
                {"ids": [m.id for m in delivered]},
            )
            log.info(
                "events delivered to billing",
                extra={"count": len(delivered), "event_ids": [str(m.event_id) for m in delivered]},
            )
        for message, outcome in zip(messages, outcomes, strict=True):
            if not outcome.delivered:
                message.attempts += 1
                delay = backoff_seconds(
                    message.attempts, maximum=sender.settings.outbox_backoff_max_seconds
                )
                message.next_attempt_at = now + timedelta(seconds=delay)
                message.last_error = outcome.error
                log.warning(
                    "event not delivered to billing; will retry",
                    extra={
                        "event_id": str(message.event_id),
                        "attempts": message.attempts,
                        "retry_in_seconds": round(delay, 1),
                        "error": outcome.error,
                    },
                )
        return len(messages)


class OutboxDispatcher:
    """Best-effort delivery right after a commit, in a background thread of the web process."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.sender = BillingSender(settings)
        self.enabled = settings.outbox_deliver_immediately
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="outbox")

    def after_commit(self, ids: list[int]) -> None:
        if self.enabled and ids:
            self._pool.submit(self._deliver, list(ids))

    def _deliver(self, ids: list[int]) -> None:
        size = self.sender.settings.outbox_batch_size
        try:
            for start in range(0, len(ids), size):
                deliver_due(self.db, self.sender, ids=ids[start : start + size])
        except Exception:  # the worker will deliver it; never let this thread die noisily
            log.exception("immediate outbox delivery failed")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.sender.close()
