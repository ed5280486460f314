"""`python -m billing.worker [--once]`: reconciliation, expiry, outbox; safe to run several."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import billing.models  # noqa: F401 - every table mapped, so foreign keys resolve in this process
from billing.config import get_settings
from billing.log import configure_logging
from billing.resources import Resources
from billing.worker.jobs import run_once

logger = logging.getLogger("billing.worker")


async def main(once: bool) -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    resources = Resources(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while True:
            done = await run_once(resources)
            if any(done.values()):
                logger.info("worker pass", extra={"done": done})
            if once or stop.is_set():
                break
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
