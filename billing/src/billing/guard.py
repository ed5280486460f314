"""Input guard (pure ASGI, in front of every route): bounded bodies and no NUL characters.

* A body larger than `BILLING_MAX_BODY_BYTES` answers `413 payload_too_large` — checked on
  Content-Length before reading, and counted while reading (a chunked body has no length).
* A NUL character in the path, the query string or a JSON string (`\\u0000`) answers
  `422 validation_error`: PostgreSQL cannot store it in text, and no field of ours needs it.
  One place for every endpoint, present and future, instead of a validator on each field.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

# `\u0000` in JSON text, not preceded by an escaped backslash (`\\u0000` is the text "\u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _has_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw or b"\x00" in unquote_to_bytes(raw)


async def _answer(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class InputGuard:
    def __init__(self, app: Any, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope.get("raw_path") or scope["path"].encode()) or _has_nul(
            scope.get("query_string", b"")
        ):
            await _answer(send, 422, "validation_error", "NUL characters are not allowed.")
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._too_large(send)
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") and length in (None, b"0"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._too_large(send)
                return
        if b"\x00" in body or _JSON_NUL.search(body):
            await _answer(send, 422, "validation_error", "NUL characters are not allowed.")
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        await _answer(
            send,
            413,
            "payload_too_large",
            f"The request body is larger than {self.max_body_bytes} bytes.",
        )
