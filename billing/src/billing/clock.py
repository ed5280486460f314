"""Billing's one clock: every decision (periods, expiry, renewals, retries, grace, access) reads
time through `now()` (`billing.db.utcnow` delegates here).

In production the clock is the system's. A test or demo stack sets `BILLING_TEST_CLOCK=1` (never
set in production) and may then move it FORWARD through `POST /internal/v1/clock/advance`: the
offset lives in Redis (`<prefix>clock:offset`, only ever increased with INCRBYFLOAT, so two
concurrent moves add up and nothing moves it back), and every process of the stack (API copies,
worker copies) reads it before each request and each worker pass (`sync`). Access decisions
compare the periods held in memory with this clock at each check, so a move needs no invalidation.

A test that moved the clock often needs to know when the worker has acted on the new time: each
worker pass, when it is over, records the time it began (`note_worker_pass`, per worker, only ever
later), and `workers_caught_up_to` answers the latest — everything due by then has been taken up
(by that worker, or leased by another).

`wall_now()` is the real time, for the few stamps compared with another service's real clock
(pay_api's `occurred_at` of an event, see payments/service.py) — never for a billing decision.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

OFFSET_KEY = "clock:offset"
WORKER_PASSES_KEY = "clock:worker_passes"  # sorted set: worker -> when its last pass began


class Clock:
    """The process's clock: the system time plus an offset that only grows."""

    def __init__(self) -> None:
        self._offset_seconds = 0.0

    @property
    def offset_seconds(self) -> float:
        return self._offset_seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset_seconds)

    def _take(self, offset_seconds: float) -> None:
        # Within one process the clock never goes back, whatever order reads arrive in.
        self._offset_seconds = max(self._offset_seconds, offset_seconds)

    async def sync(self, redis: Redis, prefix: str) -> None:
        """Read the stack's offset (test clock only); keep the last one if Redis does not answer."""
        try:
            raw = await redis.get(prefix + OFFSET_KEY)
        except RedisError:
            logger.warning("test clock: offset not readable, keeping the last one")
            return
        self._take(float(raw) if raw is not None else 0.0)

    async def advance(self, redis: Redis, prefix: str, seconds: float) -> datetime:
        """Move the stack's clock forward by `seconds` (> 0); the new time."""
        if seconds <= 0:
            raise ValueError("the clock only moves forward")
        offset = await redis.incrbyfloat(prefix + OFFSET_KEY, seconds)
        self._take(float(offset))
        logger.warning("test clock moved forward", extra={"seconds": seconds, "offset": offset})
        return self.now()

    def reset_for_tests(self) -> None:
        """Back to the system time: only billing's own tests call this, between tests."""
        self._offset_seconds = 0.0


CLOCK = Clock()


def now() -> datetime:
    """Billing's current time (UTC, aware)."""
    return CLOCK.now()


async def note_worker_pass(redis: Redis, prefix: str, *, worker: str, began: datetime) -> None:
    """A pass of `worker` that began at `began` (billing's time) is over (test clock only)."""
    try:
        await redis.zadd(prefix + WORKER_PASSES_KEY, {worker: began.timestamp()}, gt=True)
    except RedisError:
        logger.warning("test clock: the worker's pass not recorded")


async def workers_caught_up_to(redis: Redis, prefix: str) -> datetime | None:
    """When the latest finished worker pass began (any worker); None before the first."""
    try:
        latest = await redis.zrevrange(prefix + WORKER_PASSES_KEY, 0, 0, withscores=True)
    except RedisError:
        logger.warning("test clock: the workers' passes not readable")
        return None
    return datetime.fromtimestamp(latest[0][1], UTC) if latest else None


def wall_now() -> datetime:
    """The real time, for stamps compared with another service's clock (never a decision)."""
    return datetime.now(UTC)


class ClockSync:
    """Pure ASGI middleware (installed only with the test clock): each request reads the stack's
    offset first, so a move made through one API copy holds for the next request to any copy."""

    def __init__(self, app, resources) -> None:
        self.app = app
        self.resources = resources

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await CLOCK.sync(self.resources.redis, self.resources.settings.redis_prefix)
        await self.app(scope, receive, send)
