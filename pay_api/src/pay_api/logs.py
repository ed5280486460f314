"""Structured logs: one JSON object a line, carrying the request id that crosses services."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import Flask, g, request

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else passed through `extra=` is logged as a field.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": "pay_api",
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for pay_api's loggers (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is noise


def current_request_id() -> str | None:
    return request_id_var.get()


def init_app(app: Flask) -> None:
    """Take `X-Request-ID` from the caller (or make one), log each request, echo the id back."""

    @app.before_request
    def _take_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming[:200] if incoming else uuid.uuid4().hex
        g.request_id_token = request_id_var.set(request_id)

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
            },
        )
        return response

    @app.teardown_request
    def _forget_request_id(_exc) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
