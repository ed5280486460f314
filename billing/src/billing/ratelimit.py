"""Rate limits on the user's money actions (purchase, refund, cancel), per user and per client
address, counted in Redis with the `limits` library (the one slowapi is built on), so every copy
of billing shares the counts.

A pure ASGI middleware with a table of the limited routes (routers stay as they are): past a
limit the answer is `429 rate_limited` with `Retry-After` (seconds) and nothing runs. The user is
the `sub` of a valid user token (an invalid token is limited by address only, and refused by the
route anyway). The address is the connection's: behind the proxy, uvicorn's `--proxy-headers`
makes it the client's. If Redis does not answer the request goes through (limits protect
billing; they must not take purchases down with Redis) and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from typing import Any

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from billing.auth import TokenVerifier
from billing.config import Settings
from billing.errors import BillingError

log = logging.getLogger(__name__)

# (method, path, action): each action has its own counters.
LIMITED = (
    ("POST", re.compile(r"^/api/v1/subscriptions/?$"), "purchase"),
    ("POST", re.compile(r"^/api/v1/subscriptions/[^/]+/cancel/?$"), "cancel"),
    ("POST", re.compile(r"^/api/v1/payments/[^/]+/refund/?$"), "refund"),
)


def _action(scope: dict) -> str | None:
    for method, path, action in LIMITED:
        if scope["method"] == method and path.match(scope["path"]):
            return action
    return None


class RateLimits:
    def __init__(self, app: Any, *, settings: Settings, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier
        self.enabled = settings.rate_limits
        self.per_user = parse(settings.rate_limit_per_user)
        self.per_address = parse(settings.rate_limit_per_address)
        storage = RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=f"{settings.redis_prefix}ratelimit",
            wrap_exceptions=True,
        )
        self.limiter = MovingWindowRateLimiter(storage)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        action = _action(scope) if scope["type"] == "http" and self.enabled else None
        if action is None:
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown",))[0]
        counters = [(self.per_address, "address", address)]
        user = self._user(scope)
        if user is not None:
            counters.append((self.per_user, "user", user))
        for item, kind, who in counters:
            try:
                allowed = await self.limiter.hit(item, action, kind, who)
                stats = (
                    None
                    if allowed
                    else await self.limiter.get_window_stats(item, action, kind, who)
                )
            except Exception as exc:  # Redis down: let it through (see the docstring)
                log.warning("rate limits not checked: %s", exc)
                break
            if not allowed:
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                log.warning(
                    "rate limited",
                    extra={"action": action, "per": kind, "limit": str(item), "who": who},
                )
                await _too_many(
                    send, action=action, kind=kind, item=str(item), retry_after=retry_after
                )
                return
        await self.app(scope, receive, send)

    def _user(self, scope: dict) -> str | None:
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        try:
            return str(self.verifier.user_id(authorization))
        except BillingError:
            return None


async def _too_many(send: Any, *, action: str, kind: str, item: str, retry_after: int) -> None:
    body = json.dumps(
        {
            "code": "rate_limited",
            "message": f"Too many {action} requests; try again in {retry_after} s.",
            "details": {"action": action, "per": kind, "limit": item},
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
