"""Prometheus metrics of billing (docs/contracts.md, "Health, readiness, metrics").

* Requests: `billing_http_request_duration_seconds{route, method, status}` — a histogram whose
  `_count` is the request count — by route *template* (`/api/v1/payments/{payment_id}`), so ids
  never become labels. Valid access checks are answered in front of the app
  (`billing.access.fastpath`), which records them itself under their template
  (`AccessCheckMetrics`).
* Access decisions: `billing_access_checks_total{source, allowed}`, `source` = `cache` (decided
  from memory alone) or `database` (a query was needed: a user read into memory, SQL while memory
  was not trusted, or the FastAPI route after an error); the cache hit ratio is
  `cache / (cache + database)`. Batch checks are not counted here.
* State of the system, read from the database when scraped (`StateCollector`): payments by
  status, open payments past their deadline, the reconciler's queue, the outbox's backlog and
  age, and the renewals due but not renewed (`billing_renewals_due{state}`: `waiting` = active
  subscriptions whose renewal fell due — period end minus BILLING_RENEWAL_LEAD_SECONDS — and that
  are not renewed yet, `past_due` = in dunning; `billing_renewals_due_oldest_seconds`: how long
  the longest-waiting one has been due). Every copy answers the same figures: aggregate with
  `max`, not `sum`.
* Renewals, counted where they happen (the worker's charges on its own endpoint; a success or an
  end applied by the API — a pay_api event, an emailed link — on the API's), so sum them over
  every job: `billing_renewal_attempts_total{outcome}` — one per off-session charge the worker
  sent, by what came of it: `succeeded`, `declined` (soft: retried on the schedule),
  `hard_decline` (not retried; also no saved card), `authentication_required`, `in_flight`
  (processing or unknown: the reconciler settles it), `closed` (the payment had ended), `error`
  (pay_api unreachable or refusing: the same attempt is sent again);
  `billing_renewals_succeeded_total` (a renewal payment extended its subscription, by whatever
  path); `billing_renewal_subscriptions_total{status}` — subscriptions entering `past_due`
  (a decline, or a period that ended unrenewed), `suspended` or `expired` through dunning;
  `billing_renewal_lag_seconds` — from the old period's end to the renewal's success (0 when
  renewed before the end, as the lead time intends).

With several processes (uvicorn --workers), PROMETHEUS_MULTIPROC_DIR must name an empty folder
shared by them; `/metrics` then sums every process's samples (prometheus-client's multiprocess
mode). Without it, the process's own registry is served.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import compile_path

from billing.payments.state import OPEN_PAYMENT_STATUSES

logger = logging.getLogger(__name__)

REQUEST_SECONDS = Histogram(
    "billing_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status (_count = requests).",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ACCESS_CHECKS = Counter(
    "billing_access_checks_total",
    "Access decisions answered, by where they came from (cache|database) and the answer.",
    ["source", "allowed"],
)

RENEWAL_ATTEMPTS = Counter(
    "billing_renewal_attempts_total",
    "Off-session renewal charges the worker sent, by outcome (succeeded, declined, hard_decline, "
    "authentication_required, in_flight, closed, error).",
    ["outcome"],
)
RENEWALS_SUCCEEDED = Counter(
    "billing_renewals_succeeded_total",
    "Renewal payments that extended their subscription (any path: worker, event, link).",
)
RENEWAL_SUBSCRIPTIONS = Counter(
    "billing_renewal_subscriptions_total",
    "Subscriptions moved by dunning, by the status they entered (past_due, suspended, expired).",
    ["status"],
)
RENEWAL_LAG_SECONDS = Histogram(
    "billing_renewal_lag_seconds",
    "From the old period's end to the renewal's success (0: renewed before the end).",
    buckets=(0, 60, 300, 900, 3600, 6 * 3600, 86400, 2 * 86400, 3 * 86400, 5 * 86400, 7 * 86400),
)

# Routes whose 200 answers are access decisions.
_ACCESS_ROUTES = frozenset({"/api/v1/access/films/{film_id}", "/internal/v1/access"})
_UNMATCHED = "unmatched"  # a path no route knows (404): one label, whatever the path
# The statuses `reconcile_payments` asks pay_api about (worker/jobs.py).
_RECONCILED = ("pending", "processing", "unknown")


class RequestMetrics:
    """Pure ASGI middleware (outermost): times every request and labels it by route template."""

    def __init__(self, app: Any, openapi: Callable[[], dict]) -> None:
        self.app = app
        # The API's path templates (from its OpenAPI document, built on first need), to name the
        # requests answered before routing.
        self.openapi = openapi
        self._patterns: list[tuple[re.Pattern, str]] | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = {"status": 500, "allowed": None}

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and answer["allowed"] is None:
                body = message.get("body", b"")
                if b'"allowed":true' in body:
                    answer["allowed"] = "true"
                elif b'"allowed":false' in body:
                    answer["allowed"] = "false"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            routed = scope.get("route")
            template = routed.path if routed is not None else self._template(scope)
            status = answer["status"]
            REQUEST_SECONDS.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
            if template in _ACCESS_ROUTES and status == 200 and answer["allowed"]:
                source = "database" if routed is not None else "cache"
                ACCESS_CHECKS.labels(source, answer["allowed"]).inc()

    def _template(self, scope: dict) -> str:
        if self._patterns is None:
            self._patterns = [(compile_path(path)[0], path) for path in self.openapi()["paths"]]
        for pattern, path in self._patterns:
            if pattern.match(scope["path"]):
                return path
        return _UNMATCHED


class AccessCheckMetrics:
    """What the access fast path records for each answer (children bound once: the hot path)."""

    def __init__(self) -> None:
        self._seconds = {
            route: REQUEST_SECONDS.labels(route, "GET", "200") for route in _ACCESS_ROUTES
        }
        self._checks = {
            (source, allowed): ACCESS_CHECKS.labels(source, "true" if allowed else "false")
            for source in ("cache", "database")
            for allowed in (True, False)
        }

    def record(self, route: str, *, source: str, allowed: bool, seconds: float) -> None:
        self._seconds[route].observe(seconds)
        self._checks[(source, allowed)].inc()


class StateCollector:
    """The system's state, read from billing's database at scrape time (one short transaction)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        now: datetime,
        renewal_lead_seconds: float,
        timeout_ms: int = 2000,
    ) -> None:
        self.engine = engine
        self.now = now  # billing's clock (billing.clock): a test stack's may be moved forward
        self.renewal_lead = timedelta(seconds=renewal_lead_seconds)
        self.timeout_ms = timeout_ms

    async def families(self) -> list[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "billing_database_up", "1 when billing's database answered this scrape's queries."
        )
        try:
            families = await self._read()
        except Exception:  # the scrape must still answer: the request metrics matter most then
            logger.warning("metrics: billing's database did not answer", exc_info=True)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    async def _read(self) -> list[GaugeMetricFamily]:
        async with self.engine.connect() as connection:
            await connection.execute(text(f"SET statement_timeout = {int(self.timeout_ms)}"))
            by_status = (
                await connection.execute(
                    text("SELECT status, count(*) FROM payments GROUP BY status")
                )
            ).all()
            open_payments = (
                await connection.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE expires_at < now()),"
                        " count(*) FILTER (WHERE next_check_at <= now()"
                        "   AND status = ANY(:reconciled)),"
                        " coalesce(extract(epoch FROM now() - min(next_check_at)"
                        "   FILTER (WHERE next_check_at <= now() AND status = ANY(:reconciled))), 0)"
                        " FROM payments WHERE status = ANY(:open)"
                    ),
                    {"open": list(OPEN_PAYMENT_STATUSES), "reconciled": list(_RECONCILED)},
                )
            ).one()
            refunds_due = await connection.scalar(
                text(
                    "SELECT count(*) FROM refunds WHERE status = 'pending' AND next_check_at <= now()"
                )
            )
            outbox = (
                await connection.execute(
                    text(
                        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                        " FROM outbox WHERE delivered_at IS NULL"
                    )
                )
            ).one()
            renewals = (
                await connection.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE status = 'active'),"
                        " count(*) FILTER (WHERE status = 'past_due'),"
                        " min(current_period_end) FILTER (WHERE status = 'active')"
                        " FROM subscriptions WHERE auto_renew"
                        " AND status IN ('active', 'past_due') AND current_period_end <= :due"
                    ),
                    {"due": self.now + self.renewal_lead},
                )
            ).one()
            await connection.rollback()

        payments = GaugeMetricFamily(
            "billing_payments", "Payments by status (every payment ever made).", labels=["status"]
        )
        for status, count in by_status:
            payments.add_metric([status], count)
        past_deadline = GaugeMetricFamily(
            "billing_open_payments_past_deadline",
            "Open payments (created, pending, processing, unknown) whose deadline has passed.",
        )
        past_deadline.add_metric([], open_payments[0])
        queue = GaugeMetricFamily(
            "billing_reconciler_due",
            "Rows the reconciler should have asked pay_api about by now.",
            labels=["object"],
        )
        queue.add_metric(["payment"], open_payments[1])
        queue.add_metric(["refund"], refunds_due or 0)
        queue_age = GaugeMetricFamily(
            "billing_reconciler_oldest_due_seconds",
            "How long the longest-waiting payment has been due for a reconciler check.",
        )
        queue_age.add_metric([], float(open_payments[2]))
        backlog = GaugeMetricFamily(
            "billing_outbox_backlog", "Outbox messages not delivered yet (access invalidations)."
        )
        backlog.add_metric([], outbox[0])
        age = GaugeMetricFamily(
            "billing_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox message."
        )
        age.add_metric([], float(outbox[1]))
        due = GaugeMetricFamily(
            "billing_renewals_due",
            "Subscriptions whose renewal is due and not paid: waiting (active, due since period "
            "end - lead) or past_due (dunning).",
            labels=["state"],
        )
        due.add_metric(["waiting"], renewals[0])
        due.add_metric(["past_due"], renewals[1])
        oldest = GaugeMetricFamily(
            "billing_renewals_due_oldest_seconds",
            "How long the longest-waiting active subscription's renewal has been due.",
        )
        waiting_since = renewals[2] - self.renewal_lead if renewals[2] is not None else self.now
        oldest.add_metric([], max(0.0, (self.now - waiting_since).total_seconds()))
        return [payments, past_deadline, queue, queue_age, backlog, age, due, oldest]


class _Families:
    """A collector that yields families read beforehand (the database is read asynchronously)."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self):
        yield from self._families


def exposition(state: list[GaugeMetricFamily]) -> bytes:
    """The text answer of /metrics: this process's (or every process's) samples and the state."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(_Families(state))
    return generate_latest(registry)
