"""The cached access check, answered before FastAPI's request machinery.

The movie service asks on every play, and the lead's benchmark holds it to ≥ 70% of /health's
throughput. FastAPI's per-request work (routing, dependency solving, response classes) costs more
than the check itself, so a cache HIT is answered here: verify the JWT (verified tokens are
remembered), one Redis round trip, pre-assembled JSON bytes. Anything else — a miss, a bad token,
a malformed id, Redis trouble — falls through to the FastAPI routes in `billing.access.router` and
`billing.internal.access`, which are the documented (OpenAPI) implementation and give the same answer
and every error. So this module only ever answers what those routes would answer from the cache.
"""

from __future__ import annotations

import uuid
from typing import Any

from billing.access.service import access_body
from billing.errors import BillingError

_USER_PREFIX = "/api/v1/access/films/"
_INTERNAL_PATH = "/internal/v1/access"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _query(scope: dict) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in scope["query_string"].decode("latin-1").split("&"):
        key, _, value = pair.partition("=")
        params.setdefault(key, value)
    return params


class AccessFastPath:
    """Pure ASGI middleware: answers cached access checks, passes everything else on."""

    def __init__(self, app: Any, resources: Any) -> None:
        self.app = app
        self.resources = resources

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            body = None
            if path == _INTERNAL_PATH:
                body = await self._service_check(scope)
            elif path.startswith(_USER_PREFIX):
                body = await self._user_check(scope, path[len(_USER_PREFIX) :])
            if body is not None:
                headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(body))]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _user_check(self, scope: dict, film_id: str) -> bytes | None:
        try:
            user_id = self.resources.verifier.user_id(_header(scope, b"authorization"))
            return await self._cached(str(user_id), str(uuid.UUID(film_id)))
        except (BillingError, ValueError):
            return None  # the FastAPI route answers the error

    async def _service_check(self, scope: dict) -> bytes | None:
        try:
            issuer = self.resources.verifier.service(_header(scope, b"authorization"))
            if issuer not in self.resources.settings.access_check_service_set:
                return None
            query = _query(scope)
            user_id = str(uuid.UUID(query["user_id"]))
            film_id = str(uuid.UUID(query["film_id"]))
        except (BillingError, ValueError, KeyError):
            return None
        return await self._cached(user_id, film_id)

    async def _cached(self, user_id: str, film_id: str) -> bytes | None:
        try:
            fields, _versions = await self.resources.access_cache.get(user_id, film_id)
        except Exception:  # Redis trouble: the route decides (and logs) it
            return None
        return access_body(fields, user_id, film_id) if fields is not None else None
