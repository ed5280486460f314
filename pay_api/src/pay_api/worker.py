"""Outbox delivery loop: `python -m pay_api.worker` (or `--once` to deliver what is due and exit).

Several copies may run: rows are claimed with SELECT … FOR UPDATE SKIP LOCKED. Each round sends
up to `PAY_API_OUTBOX_BATCH` (100) due rows to billing in one POST, and the next round starts at
once while rounds find work, so a backlog drains at about a hundred events a round trip.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from prometheus_client import Counter, Gauge, start_http_server

from pay_api.config import get_settings
from pay_api.db import Database, utcnow
from pay_api.logs import configure_logging
from pay_api.outbox import BillingSender, deliver_due
from pay_api.pruning import prune

log = logging.getLogger("pay_api.worker")

# Scraped on PAY_API_WORKER_METRICS_PORT; the outbox's backlog and age are on the web app's /metrics.
DELIVERIES = Counter("pay_api_worker_deliveries_total", "Outbox rows this worker tried to deliver.")
ROUND_FAILURES = Counter(
    "pay_api_worker_round_failures_total", "Delivery rounds that failed (database unavailable)."
)
LAST_ROUND = Gauge(
    "pay_api_worker_last_round_timestamp_seconds",
    "When this worker last finished a delivery round (unix time).",
    multiprocess_mode="max",
)


def run(*, once: bool = False) -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    database = Database(settings.database_url)
    sender = BillingSender(settings)
    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    log.info("outbox worker started", extra={"billing_url": settings.billing_url, "once": once})
    total = 0
    try:
        while not stop.is_set():
            try:
                tried = deliver_due(database, sender)
            except Exception:  # database down for a moment: keep the loop alive
                log.exception("outbox delivery round failed")
                ROUND_FAILURES.inc()
                tried = 0
                if once:
                    raise
            else:
                DELIVERIES.inc(tried)
                LAST_ROUND.set(time.time())
            total += tried
            if tried == 0:
                _prune(database, settings)  # idle: a good moment for the old guard rows
                if once:
                    break
                stop.wait(settings.worker_poll_seconds)
    finally:
        sender.close()
        database.dispose()
    return total


def _prune(database: Database, settings) -> None:
    try:
        pruned = prune(database, settings=settings, now=utcnow())
    except Exception:  # a failed prune is retried on the next idle round
        log.exception("pruning failed")
        return
    if pruned:
        log.info("old rows pruned", extra={"rows": pruned})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    args = parser.parse_args()
    run(once=args.once)


if __name__ == "__main__":
    main()
