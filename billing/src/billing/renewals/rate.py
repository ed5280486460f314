"""The renewals' share of Stripe's rate limit (BILLING_RENEWAL_MAX_PER_SECOND), shared by every
worker through Redis.

Real Stripe allows about 100 requests/s in live mode, counted in requests, not in charges. So the
cap is in Stripe requests: a renewal charge counts for the most pay_api can send for it
(`STRIPE_REQUESTS_PER_CHARGE`). Each charge reserves a slot on one schedule kept in Redis (a
generic cell rate: the next free instant, moved on by `requests / cap` seconds per reservation,
read and moved in one script by Redis's own clock, so workers on other machines agree), and waits
for its slot. Slots are evenly spaced, so at most cap/3 + 1 charges start in any second, wall-clock or sliding —
each sending 2 requests when it goes through (create, confirm), 3 at most — and a burst of
workers waking at once queues instead of exceeding the cap.
"""

from __future__ import annotations

import asyncio
import math

from redis.asyncio import Redis

# pay_api's off-session charge (docs/contracts.md): the PaymentIntent's create (or, after a lost
# answer, its retrieve), the confirmation, and a retrieve after a decline.
STRIPE_REQUESTS_PER_CHARGE = 3

# KEYS[1]: the next free instant, in microseconds of Redis's clock; ARGV[1]: microseconds this
# reservation takes. Returns the slot's start and the wait until it, in microseconds (integers all
# the way, so slots are spaced exactly).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local next_free = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', next_free),
           'PX', math.ceil((next_free - now) / 1000) + 1000)
return {string.format('%d', start), string.format('%d', start - now)}
"""


class StripeRate:
    """Slots for Stripe requests at `per_second` across every process using `key`."""

    def __init__(self, redis: Redis, key: str, per_second: int) -> None:
        self.per_second = per_second
        self.key = key
        self._reserve = redis.register_script(_RESERVE)

    def slot_microseconds(self, requests: int) -> int:
        """How long a reservation of `requests` holds the schedule."""
        return math.ceil(requests * 1_000_000 / self.per_second)

    async def reserve(self, requests: int) -> tuple[int, float]:
        """A slot for `requests` Stripe requests: (its start in microseconds of Redis's clock,
        seconds until it)."""
        start, wait = await self._reserve(keys=[self.key], args=[self.slot_microseconds(requests)])
        return int(start), int(wait) / 1_000_000

    async def wait(self, requests: int = STRIPE_REQUESTS_PER_CHARGE) -> None:
        """Return when this caller's slot has come (at once without a cap)."""
        if self.per_second <= 0:
            return
        _, seconds = await self.reserve(requests)
        if seconds > 0:
            await asyncio.sleep(seconds)
