"""Structured logs: one JSON object a line, carrying the request id that crosses services."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from contextvars import ContextVar

from flask import Flask, g, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestId(logging.Filter):
    """The request id being served, on every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout, in the field vocabulary every service shares (docs/contracts.md,
    Logs); idempotent."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            JsonFormatter(
                "{name}{levelname}{message}",
                style="{",
                rename_fields={"name": "logger", "levelname": "level", "message": "event"},
                static_fields={"service": "pay_api"},
                timestamp=True,
            )
        )
        handler.addFilter(_RequestId())
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is noise
    # The SDK's two lines per Stripe request ("Request to Stripe api", "Stripe API response")
    # repeat what our own lines say about each payment, and cost a sixth of pay_api's CPU in a
    # batch of renewals (bench/README.md); its warnings and errors still come through.
    logging.getLogger("stripe").setLevel(logging.WARNING)


def current_request_id() -> str | None:
    return request_id_var.get()


def init_app(app: Flask) -> None:
    """Take `X-Request-ID` from the caller (or make one), log each request, echo the id back."""

    @app.before_request
    def _take_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming[:200] if incoming else uuid.uuid4().hex
        g.request_id_token = request_id_var.set(request_id)
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_and_echo(response):
        request_id = request_id_var.get()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        logging.getLogger("pay_api.access").info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "http_status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.request_started) * 1000, 2),
            },
        )
        return response

    @app.teardown_request
    def _forget_request_id(_exc) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
