"""Liveness, readiness and metrics (docs/contracts.md, "Health, readiness, metrics").

Liveness says the process answers and asks nothing else. Readiness says this copy can serve: its
database answers and the schema is at the migrations' head. Compose's health checks and nginx use
readiness. `/metrics` is Prometheus' text format:

* `pay_api_http_request_duration_seconds{route, method, status}` — a histogram (its `_count` is
  the request count) by Flask's URL rule (`/pay/<uuid:payment_id>`), so ids never become labels;
  the webhook inbox is applied in the request that receives it, so its traffic and failures are the
  `/webhooks/stripe` series and it has no backlog;
* read from the database at scrape time: payments by status, the outbox's backlog and age, refunds
  waiting for Stripe. Every copy answers the same figures: aggregate with `max`, not `sum`.

With several processes (gunicorn workers), PROMETHEUS_MULTIPROC_DIR names an empty folder they
share (gunicorn.conf.py marks dead workers), and `/metrics` sums every process's samples.
"""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from pathlib import Path

from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from pay_api.db import get_db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# pay_api/alembic next to pay_api/src (the repository's layout, and the images' /app).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "alembic"

REQUEST_SECONDS = Histogram(
    "pay_api_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL rule, method and status (_count = requests).",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_UNMATCHED = "unmatched"


@lru_cache
def migration_heads() -> frozenset[str]:
    """The revisions this code expects the schema to be at."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@bp.get("/health")
def health():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready():
    """Readiness: the database answers and its schema is at the migrations' head."""
    checks = {"database": "ok", "migrations": "ok"}
    try:
        with get_db().engine.connect() as connection:
            connection.execute(text("SET statement_timeout = 2000"))
            revisions = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
        if revisions != migration_heads():
            checks["migrations"] = "behind" if revisions else "none"
    except Exception:
        log.warning("readiness: the database did not answer", exc_info=True)
        checks = {"database": "unavailable", "migrations": "unknown"}
    if all(value == "ok" for value in checks.values()):
        return jsonify({"status": "ready", "checks": checks})
    body = {
        "code": "not_ready",
        "message": "This copy of pay_api cannot serve yet.",
        "details": checks,
    }
    return jsonify(body), 503


@bp.get("/metrics")
def metrics():
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(_StateCollector())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class _StateCollector:
    """pay_api's state, read from its database when scraped."""

    def collect(self):
        up = GaugeMetricFamily(
            "pay_api_database_up", "1 when pay_api's database answered this scrape's queries."
        )
        try:
            families = _read_state()
        except Exception:
            log.warning("metrics: pay_api's database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _read_state() -> list[GaugeMetricFamily]:
    with get_db().engine.connect() as connection:
        connection.execute(text("SET statement_timeout = 2000"))
        by_status = connection.execute(
            text("SELECT status, count(*) FROM payments GROUP BY status")
        ).all()
        outbox = connection.execute(
            text(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " FROM outbox WHERE delivered_at IS NULL"
            )
        ).one()
        refunds = connection.scalar(text("SELECT count(*) FROM refunds WHERE status = 'pending'"))
        connection.rollback()
    payments = GaugeMetricFamily(
        "pay_api_payments", "Payments by pay_api's status.", labels=["status"]
    )
    for status, count in by_status:
        payments.add_metric([status], count)
    backlog = GaugeMetricFamily(
        "pay_api_outbox_backlog", "Notifications to billing not delivered yet."
    )
    backlog.add_metric([], outbox[0])
    age = GaugeMetricFamily(
        "pay_api_outbox_oldest_age_seconds",
        "Age of the oldest undelivered notification to billing.",
    )
    age.add_metric([], float(outbox[1]))
    pending = GaugeMetricFamily(
        "pay_api_refunds_pending", "Refunds waiting for Stripe's final answer."
    )
    pending.add_metric([], refunds or 0)
    return [payments, backlog, age, pending]


def init_app(app: Flask) -> None:
    """Times every request and labels it by its URL rule."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else _UNMATCHED
            REQUEST_SECONDS.labels(rule, request.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    app.register_blueprint(bp)
