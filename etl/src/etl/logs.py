"""Structured logs: one JSON object a line on stdout, in the field vocabulary every service shares
(docs/contracts.md, Logs). The event is what happened (`batch`, `pass`, `retry`, …)."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{name}{levelname}{message}",
            style="{",
            rename_fields={"name": "logger", "levelname": "level", "message": "event"},
            static_fields={"service": "etl"},
            timestamp=True,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; our batch lines say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
