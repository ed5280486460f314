"""`python -m etl` runs passes forever (every ETL_INTERVAL_SECONDS); `python -m etl --once` runs
one pass and exits 0, or 1 when billing or the admin database was unavailable (nothing is lost:
the next run starts from the saved watermark). `--full` resends everything once (billing answers
changed=false for what it already has) — the way to retry rows billing rejected before a fix."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from etl import logs, metrics
from etl.config import ConfigError, Settings
from etl.extract import AdminDatabaseUnavailable
from etl.load import BillingUnavailable
from etl.sync import Etl

log = logging.getLogger("etl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    parser.add_argument(
        "--full", action="store_true", help="ignore the saved state: resend every row once"
    )
    args = parser.parse_args(argv)
    logs.configure(os.environ.get("ETL_LOG_LEVEL", "INFO"))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.critical("config_error", extra={"detail": f"refusing to start: {exc}"})
        return 2

    etl = Etl(settings, stop=threading.Event())
    metrics.serve(settings.metrics_port)
    try:
        if args.once:
            return 0 if _pass(etl, full=args.full) else 1
        return _loop(etl, settings, full=args.full)
    finally:
        etl.close()


def _pass(etl: Etl, *, full: bool = False) -> bool:
    started, started_at = time.monotonic(), time.time()
    try:
        result = etl.run_once(full=full)
    except (BillingUnavailable, AdminDatabaseUnavailable) as exc:
        log.error(
            "pass_failed",
            extra={
                "detail": "pass interrupted; the watermark stays at the last accepted batch",
                "reason": str(exc),
                "error": type(exc).__name__,
            },
        )
        metrics.record_pass(started_at=started_at, ok=False)
        return False
    except Exception:
        # A bug must not end the worker silently: log it, back off, try again.
        log.exception("pass_failed", extra={"detail": "pass failed unexpectedly"})
        metrics.record_pass(started_at=started_at, ok=False)
        return False
    metrics.record_pass(
        started_at=started_at,
        ok=True,
        counts={name: result.total(name) for name in ("changed", "unchanged", "rejected")},
    )
    if result.total("sent"):
        log.info(
            "pass",
            extra={
                "changed": result.total("changed"),
                "unchanged": result.total("unchanged"),
                "rejected": result.total("rejected"),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
    return True


def _loop(etl: Etl, settings: Settings, *, full: bool) -> int:
    def stop(signum, frame) -> None:
        # Set from another thread: the handler may interrupt this thread while it holds the
        # event's lock (inside Event.wait), and setting it here would deadlock.
        threading.Thread(target=etl.stop.set, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "start",
        extra={
            "billing_url": settings.billing_url,
            "state_file": str(settings.state_file),
            "interval_seconds": settings.interval_seconds,
        },
    )
    failures = 0
    while not etl.stop.is_set():
        ok = _pass(etl, full=full)
        full = full and not ok  # --full: one complete pass, then incremental ones
        failures = 0 if ok else failures + 1
        pause = settings.interval_seconds
        if failures:
            pause = max(pause, settings.backoff(failures))
        etl.stop.wait(pause)
    log.info("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
