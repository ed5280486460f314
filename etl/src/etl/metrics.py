"""Prometheus metrics of the etl worker, served on ETL_METRICS_PORT (any path) when set.

`etl_lag_seconds` bounds how far billing's catalog trails the admin: every change committed in the
admin database before the last successful pass started is in billing, so the lag is the time since
that start (since the process started, before its first success).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, start_http_server

PASSES = Counter("etl_passes_total", "Passes of the etl, by outcome (ok|failed).", ["outcome"])
ROWS = Counter(
    "etl_rows_total",
    "Rows sent to billing, by its answer (changed|unchanged|rejected).",
    ["result"],
)
LAST_SUCCESS = Gauge(
    "etl_last_success_timestamp_seconds", "When the last successful pass started (unix time)."
)
_last_success = time.time()
LAG = Gauge("etl_lag_seconds", "Upper bound of how far billing's catalog trails the admin.")
LAG.set_function(lambda: time.time() - _last_success)


def serve(port: int) -> None:
    """Start the metrics endpoint in a background thread (0 = none)."""
    if port:
        start_http_server(port)


def record_pass(*, started_at: float, ok: bool, counts: dict[str, int] | None = None) -> None:
    global _last_success
    PASSES.labels("ok" if ok else "failed").inc()
    for result, count in (counts or {}).items():
        ROWS.labels(result).inc(count)
    if ok:
        _last_success = started_at
        LAST_SUCCESS.set(started_at)
