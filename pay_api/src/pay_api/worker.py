"""Outbox delivery loop: `python -m pay_api.worker` (or `--once` to deliver what is due and exit).

Several copies may run: rows are claimed with SELECT … FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from pay_api.config import get_settings
from pay_api.db import Database
from pay_api.logs import configure_logging
from pay_api.outbox import BillingSender, deliver_due

log = logging.getLogger("pay_api.worker")


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
    log.info("outbox worker started", extra={"billing_url": settings.billing_url, "once": once})
    total = 0
    try:
        while not stop.is_set():
            try:
                tried = deliver_due(database, sender)
            except Exception:  # database down for a moment: keep the loop alive
                log.exception("outbox delivery round failed")
                tried = 0
                if once:
                    raise
            total += tried
            if tried == 0:
                if once:
                    break
                stop.wait(settings.worker_poll_seconds)
    finally:
        sender.close()
        database.dispose()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    args = parser.parse_args()
    run(once=args.once)


if __name__ == "__main__":
    main()
