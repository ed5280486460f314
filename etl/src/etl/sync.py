"""One pass: for each stream (films, plans, deletions) read what changed since the watermark (minus
the look-back window), push it into billing row by row, and save the state after every batch that
billing took — so a crash, or billing going away mid-pass, loses nothing and repeats little."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from etl.config import Settings
from etl.extract import (
    DELETIONS,
    FILMS,
    PERSONAL_DISCOUNTS,
    PLANS,
    PROMO_CODES,
    STREAMS,
    AdminReader,
    Row,
)
from etl.load import BillingClient, Delivered, Rejected
from etl.state import StateStore, StreamState

log = logging.getLogger("etl")


@dataclass
class BatchCounts:
    read: int = 0  # rows the batch read from the admin database
    skipped: int = 0  # already delivered within the look-back window, or superseded
    changed: int = 0  # billing applied a change
    unchanged: int = 0  # billing already had it
    rejected: int = 0  # billing refused the row (4xx), logged and recorded

    @property
    def sent(self) -> int:
        return self.changed + self.unchanged + self.rejected


@dataclass
class PassResult:
    batches: list[tuple[str, BatchCounts]] = field(default_factory=list)

    def total(self, attribute: str) -> int:
        return sum(getattr(counts, attribute) for _, counts in self.batches)


class Etl:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.reader = AdminReader(settings.admin_database_url)
        self.billing = BillingClient(settings, self.stop)
        self.store = StateStore(settings.state_file)
        self.lookback = timedelta(seconds=settings.lookback_seconds)

    def close(self) -> None:
        self.reader.close()
        self.billing.close()

    def run_once(self, *, full: bool = False) -> PassResult:
        """One pass over every stream. Raises BillingUnavailable / AdminDatabaseUnavailable; the
        batches accepted before that are saved. `full` ignores the state and resends everything."""
        states = {} if full else self.store.load()
        result = PassResult()
        for stream in STREAMS:
            state = states.setdefault(stream, StreamState())
            self._run_stream(stream, state, states, result, full=full)
        return result

    def _run_stream(
        self,
        stream: str,
        state: StreamState,
        states: dict[str, StreamState],
        result: PassResult,
        *,
        full: bool,
    ) -> None:
        since = state.read_from(self.lookback)
        after = None
        while True:
            rows = self.reader.fetch(
                stream, since=since, after=after, limit=self.settings.batch_size
            )
            if not rows:
                return
            before = state.to_json()
            counts = self._push_batch(stream, rows, state, full=full)
            state.forget_older_than(self.lookback)
            if state.to_json() != before:
                self.store.save(states)
            result.batches.append((stream, counts))
            # Quiet while the look-back window is only re-read; one line per batch that sent.
            log.log(
                logging.INFO if counts.sent else logging.DEBUG,
                "batch",
                extra={
                    "detail": "batch delivered" if counts.sent else "batch already delivered",
                    "stream": stream,
                    **vars(counts),
                    "sent": counts.sent,
                    "watermark": _position(state),
                },
            )
            if len(rows) < self.settings.batch_size:
                return
            after = (rows[-1].changed_at, rows[-1].key)

    def _push_batch(self, stream: str, rows: list[Row], state: StreamState, *, full: bool):
        counts = BatchCounts(read=len(rows))
        request_id = uuid.uuid4().hex
        for row in rows:
            if not full and state.already_delivered(row.key, row.changed_at):
                counts.skipped += 1
                continue
            outcome = self._push_row(stream, row, request_id)
            if outcome is None:
                counts.skipped += 1
                state.record(row.key, row.changed_at)
            elif isinstance(outcome, Delivered):
                counts.changed += outcome.changed
                counts.unchanged += not outcome.changed
                state.record(row.key, row.changed_at)
            else:
                counts.rejected += 1
                state.reject(row.key, row.changed_at, outcome.as_dict())
                log.error(
                    "rejected",
                    extra={
                        "detail": "billing rejected a row; skipped until it changes in the admin",
                        "stream": stream,
                        "key": row.key,
                        "changed_at": row.changed_at.isoformat(),
                        "billing_status": outcome.status,
                        "billing_code": outcome.code,
                        "billing_message": outcome.message,
                        "request_id": request_id,
                    },
                )
        return counts

    def _push_row(self, stream: str, row: Row, request_id: str) -> Delivered | Rejected | None:
        data = row.data
        if stream == FILMS:
            body = {"title": data["title"], "active": data["active"]}
            return self.billing.put_film(row.key, body, request_id=request_id)
        body = {name: value for name, value in data.items() if name != "id"}
        if stream == PLANS:
            return self.billing.put_plan(row.key, body, request_id=request_id)
        if stream == PROMO_CODES:
            return self.billing.put_promo_code(row.key, body, request_id=request_id)
        if stream == PERSONAL_DISCOUNTS:
            return self.billing.put_personal_discount(row.key, body, request_id=request_id)
        assert stream == DELETIONS
        if data["exists_again"]:
            # Re-created with the same id after the deletion: the upsert of the live row wins.
            return None
        return self.billing.delete(data["model"], data["object_id"], request_id=request_id)


def _position(state: StreamState) -> dict | None:
    if state.watermark is None:
        return None
    moment, key = state.watermark
    return {"changed_at": moment.isoformat(), "key": key}
