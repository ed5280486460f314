"""JSON log lines (python-json-logger) in the field vocabulary every service shares
(docs/contracts.md, Logs), carrying the request id of the request being served."""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Set by config.middleware.RequestIdMiddleware for the duration of a request.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def json_formatter() -> JsonFormatter:
    """The formatter of settings.LOGGING."""
    return JsonFormatter(
        "{name}{levelname}{message}",
        style="{",
        rename_fields={"name": "logger", "levelname": "level", "message": "event"},
        static_fields={"service": "admin"},
        # Django puts the HttpRequest and the server's socket on some records: not JSON.
        reserved_attrs=[*RESERVED_ATTRS, "request", "server_time"],
        timestamp=True,
    )
