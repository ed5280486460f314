"""`python -m billing.worker [--once]`: reconciliation, expiry, outbox; safe to run several."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time

from prometheus_client import Counter, Gauge, start_http_server

import billing.models  # noqa: F401 - every table mapped, so foreign keys resolve in this process
from billing.config import get_settings
from billing.log import configure_logging
from billing.resources import Resources
from billing.worker.jobs import run_once

logger = logging.getLogger("billing.worker")

# Scraped on BILLING_WORKER_METRICS_PORT. The system's state (payments, reconciler queue, outbox)
# is on the API's /metrics; these say whether this worker keeps up.
ROWS = Counter("billing_worker_rows_total", "Rows a worker job handled.", ["job"])
JOB_FAILURES = Counter(
    "billing_worker_job_failures_total", "Passes in which a job failed.", ["job"]
)
LAST_PASS = Gauge(
    "billing_worker_last_pass_timestamp_seconds",
    "When this worker last finished a pass of every job (unix time).",
    multiprocess_mode="max",
)


def record_pass(done: dict[str, int]) -> None:
    for job, count in done.items():
        if count < 0:
            JOB_FAILURES.labels(job).inc()
        else:
            ROWS.labels(job).inc(count)
    LAST_PASS.set(time.time())


async def main(once: bool) -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    resources = Resources(settings)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while True:
            done = await run_once(resources)
            record_pass(done)
            if any(done.values()):
                logger.info("worker pass", extra={"done": done})
            if once or stop.is_set():
                break
            if any(count > 0 for count in done.values()):
                # Work was found: the next pass starts at once, with a fresh `now` (a renewal
                # another worker wrote during this pass is due by then). Every job moves the rows
                # it handled on (done, or scheduled later), so this never spins on one row; the
                # pause is for a worker that found nothing.
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.worker_interval_seconds)
            except TimeoutError:
                pass
            if stop.is_set():
                break
    finally:
        await resources.aclose()
    logger.info("worker stopped")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="one pass of every job, then exit")
    args = parser.parse_args()
    asyncio.run(main(args.once))


if __name__ == "__main__":
    cli()
