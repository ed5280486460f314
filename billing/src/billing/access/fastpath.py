"""The access check, answered in front of the FastAPI application.

The movie service asks on every play, and the benchmark holds the check to half of what the server
itself can answer (a raw ASGI app, bench/README.md). FastAPI's per-request work (its own wrapper,
middleware, routing, dependency solving) costs more than the check itself, so this outermost ASGI
layer answers every valid check: verify the JWT (verified tokens are remembered), decide from
memory (`billing.access.cache`), pre-assembled JSON bytes. Anything else — another path, a bad
token, a malformed id, a database error — goes on to the FastAPI app, whose routes in
`billing.access.router` and `billing.internal.access` are the documented (OpenAPI)
implementation, call the same `check` and answer every error. So this layer only ever answers what
those routes would answer.

Checks answered here are recorded in the metrics (`billing.metrics.AccessCheckMetrics`: the
request histogram under the route's template, `billing_access_checks_total`) and the cache's
counters, not written one log line each (at thousands a second the lines would cost more than the
checks); a caller's `X-Request-ID` is echoed. With the test clock on, the clock is read first, as
`billing.clock.ClockSync` does for the app.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from billing.access.service import access_body, check
from billing.clock import CLOCK
from billing.errors import BillingError
from billing.metrics import AccessCheckMetrics

_USER_PREFIX = "/api/v1/access/films/"
_USER_ROUTE = "/api/v1/access/films/{film_id}"
_INTERNAL_PATH = "/internal/v1/access"
_JSON = (b"content-type", b"application/json")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def canonical_uuid(value: str) -> str:
    """The UUID's canonical text (lower case, hyphens); ValueError if it is not a UUID."""
    return value if _CANONICAL_UUID.match(value) else str(uuid.UUID(value))


def _query(scope: dict) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in scope["query_string"].decode("latin-1").split("&"):
        key, _, value = pair.partition("=")
        params.setdefault(key, value)
    return params


class AccessFastPath:
    """Pure ASGI app in front of billing's FastAPI app (`inner`): answers valid access checks,
    passes everything else on. Attributes it lacks (`state`, `openapi`, …) are the inner app's."""

    def __init__(self, inner: Any, resources: Any) -> None:
        self.inner = inner
        self.resources = resources
        self._services = resources.settings.access_check_service_set
        self._test_clock = resources.settings.movable_clock
        self._metrics = AccessCheckMetrics()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path == _INTERNAL_PATH:
                route = _INTERNAL_PATH
            elif path.startswith(_USER_PREFIX):
                route = _USER_ROUTE
            else:
                route = None
            if route is not None and await self._answer(scope, send, route, path):
                return
        await self.inner(scope, receive, send)

    async def _answer(self, scope: dict, send: Any, route: str, path: str) -> bool:
        """Answer the check, or False to let the app answer (and say what is wrong)."""
        started = time.perf_counter()
        authorization = request_id = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"x-request-id":
                request_id = value
        if self._test_clock:
            await CLOCK.sync(self.resources.redis, self.resources.settings.redis_prefix)
        if route is _INTERNAL_PATH:
            answer = await self._service_check(scope, authorization)
        else:
            answer = await self._user_check(authorization, path[len(_USER_PREFIX) :])
        if answer is None:
            return False
        body, source = answer
        headers = [_JSON, (b"content-length", b"%d" % len(body))]
        if request_id is not None and len(request_id) <= 128:
            headers.append((b"x-request-id", request_id))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._metrics.record(
            route,
            source=source,
            allowed=body.startswith(b'{"allowed":true'),
            seconds=time.perf_counter() - started,
        )
        return True

    async def _user_check(
        self, authorization: str | None, film_id: str
    ) -> tuple[bytes, str] | None:
        try:
            user_id = self.resources.verifier.user_id(authorization)
            return await self._check(str(user_id), canonical_uuid(film_id))
        except (BillingError, ValueError):
            return None  # the FastAPI route answers the error

    async def _service_check(
        self, scope: dict, authorization: str | None
    ) -> tuple[bytes, str] | None:
        try:
            if self.resources.verifier.service(authorization) not in self._services:
                return None
            query = _query(scope)
            user_id = canonical_uuid(query["user_id"])
            film_id = canonical_uuid(query["film_id"])
        except (BillingError, ValueError, KeyError):
            return None
        return await self._check(user_id, film_id)

    async def _check(self, user_id: str, film_id: str) -> tuple[bytes, str] | None:
        """(the answer, "cache" when memory alone decided it, else "database")."""
        cache = self.resources.access_cache
        fields = cache.cached(user_id, film_id)
        if fields is not None:  # the common case, without a coroutine
            return access_body(fields, user_id, film_id), "cache"
        try:
            body = await check(
                sessionmaker=self.resources.sessionmaker,
                cache=cache,
                user_id=user_id,
                film_id=film_id,
            )
        except Exception:  # database trouble: the route answers it (and its error code)
            return None
        return body, "database"
