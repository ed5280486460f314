"""Structured logs: one JSON object a line, carrying the request id of the request being served.

The request id comes from the `X-Request-ID` header (or is made up), is sent back in the answer,
and is forwarded on every call billing makes to pay_api, so one id follows a request across services.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_logger = logging.getLogger("billing.access")


class _RequestId(logging.Filter):
    """The request id being served, on every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def configure_logging(level: str = "INFO") -> None:
    """Every log record (ours, uvicorn's, SQLAlchemy's) as one JSON line on stdout, in the
    field vocabulary every service shares (docs/contracts.md, Logs)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{name}{levelname}{message}",
            style="{",
            rename_fields={"name": "logger", "levelname": "level", "message": "event"},
            static_fields={"service": "billing"},
            timestamp=True,
        )
    )
    handler.addFilter(_RequestId())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # RequestIdMiddleware writes one line per request (with the request id); uvicorn's is redundant.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI middleware (cheap): request id in and out, one access log line per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SAFE_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or new_request_id()
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "http_status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)
