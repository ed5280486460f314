"""Access decisions in Redis, invalidated by version counters (cheap and race-free).

Keys (under the configured prefix):
    acc:gv                  global version: bumped when plans or films change
    acc:uv:<user>           the user's version: bumped after any change of their subscriptions
    acc:d:<user>:<film>     "<gv>|<uv>|<decision JSON fields>"

A reader fetches all three in ONE round trip (MGET) and uses the decision only if it was stored
under the current versions. A writer bumps the version after its commit, so a decision computed
from data read before that commit is stored under the old version and never used — no race between
"compute from the database" and "invalidate".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from redis.asyncio import Redis

from billing.access.fastredis import PipelinedRedis

# Versions outlive any decision by far, so a version key that expires cannot revive an old entry.
_VERSION_TTL_SECONDS = 90 * 24 * 3600


class AccessCache:
    def __init__(
        self, redis: Redis, reader: PipelinedRedis, *, prefix: str, max_ttl_seconds: int
    ) -> None:
        self._redis = redis
        self._reader = reader  # the hot read: one pipelined connection (see fastredis)
        self._max_ttl = max_ttl_seconds
        self._global_key = f"{prefix}acc:gv"
        self._user_prefix = f"{prefix}acc:uv:"
        self._decision_prefix = f"{prefix}acc:d:"

    async def get(self, user_id: str, film_id: str) -> tuple[bytes | None, bytes]:
        """(cached decision fields or None, the versions to store a fresh decision under)."""
        global_version, user_version, entry = await self._reader.mget(
            self._global_key,
            self._user_prefix + user_id,
            f"{self._decision_prefix}{user_id}:{film_id}",
        )
        versions = b"%s|%s|" % (global_version or b"0", user_version or b"0")
        if entry is not None and entry.startswith(versions):
            return entry[len(versions) :], versions
        return None, versions

    async def put(
        self, user_id: str, film_id: str, versions: bytes, fields: bytes, ttl_seconds: int
    ) -> None:
        """Store a decision computed after `versions` were read, for at most the max TTL."""
        ttl = max(1, min(self._max_ttl, ttl_seconds))
        await self._redis.set(
            f"{self._decision_prefix}{user_id}:{film_id}", versions + fields, ex=ttl
        )

    async def invalidate(
        self, *, users: Iterable[uuid.UUID] = (), everything: bool = False
    ) -> None:
        """Make cached decisions of these users (or of everyone) unreachable."""
        users = list(users)
        if not users and not everything:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                key = f"{self._user_prefix}{user_id}"
                pipe.incr(key)
                pipe.expire(key, _VERSION_TTL_SECONDS)
            if everything:
                pipe.incr(self._global_key)
            await pipe.execute()
