"""Access decisions (invariant 5): a user may watch a film exactly when a paid, unexpired period
of a plan covering that film covers now; a film covered by no active plan is free; a film the
admin withdrew (inactive) is allowed to nobody."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.access.cache import AccessCache
from billing.db import utcnow
from billing.plans.models import Film, Plan, PlanFilm
from billing.subscriptions.models import PAID_STATUSES, Subscription

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "subscription" | "grace" | "free" | "no_subscription" | "film_unavailable"
    until: datetime | None

    def fields_json(self) -> bytes:
        """The decision's part of the Access JSON object, without braces (cached as is)."""
        until = self.until.isoformat() if self.until else None
        return json.dumps(
            {"allowed": self.allowed, "reason": self.reason, "until": until}, separators=(",", ":")
        )[1:-1].encode()


def _covers_film(film_id: uuid.UUID):
    return or_(
        Plan.all_films,
        exists().where(PlanFilm.plan_id == Plan.id, PlanFilm.film_id == film_id),
    )


async def decide(
    *, session: AsyncSession, user_id: uuid.UUID, film_id: uuid.UUID, now: datetime
) -> Decision:
    """Decide from the database."""
    film_active = await session.scalar(select(Film.active).where(Film.id == film_id))
    if film_active is False:
        # Withdrawn (deactivated or deleted in the admin): nobody watches it, paid or not.
        return Decision(False, "film_unavailable", None)
    until = await session.scalar(
        select(func.max(Subscription.current_period_end))
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(
            Subscription.user_id == user_id,
            Subscription.status.in_(PAID_STATUSES),
            Subscription.current_period_start <= now,
            Subscription.current_period_end > now,
            _covers_film(film_id),
        )
    )
    if until is not None:
        return Decision(True, "subscription", until)
    # A renewal that did not go through keeps access until the grace period ends.
    grace_until = await session.scalar(
        select(func.max(Subscription.grace_until))
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(
            Subscription.user_id == user_id,
            Subscription.status == "past_due",
            Subscription.grace_until > now,
            _covers_film(film_id),
        )
    )
    if grace_until is not None:
        return Decision(True, "grace", grace_until)
    covered = await session.scalar(select(exists().where(Plan.active, _covers_film(film_id))))
    if covered:
        return Decision(False, "no_subscription", None)
    return Decision(True, "free", None)


def access_body(fields: bytes, user_id: str, film_id: str) -> bytes:
    """The Access JSON object, assembled without a serializer (this is the hot path)."""
    return b'{%s,"film_id":"%s","user_id":"%s"}' % (fields, film_id.encode(), user_id.encode())


async def check(
    *, sessionmaker, cache: AccessCache, user_id: uuid.UUID, film_id: uuid.UUID
) -> bytes:
    """The Access answer: from Redis in one round trip, else from the database (then cached)."""
    user_key, film_key = str(user_id), str(film_id)
    try:
        fields, versions = await cache.get(user_key, film_key)
    except RedisError:
        # Redis is down: answer from the database (slower, still correct), cache nothing.
        logger.warning("access cache unavailable", exc_info=True)
        fields, versions = None, None
    if fields is None:
        now = utcnow()
        async with sessionmaker() as session:
            decision = await decide(session=session, user_id=user_id, film_id=film_id, now=now)
        fields = decision.fields_json()
        if versions is not None:
            # An allowed decision lives until the paid period ends at the latest (put() caps it).
            ttl = int((decision.until - now).total_seconds()) if decision.until else 1 << 30
            try:
                await cache.put(user_key, film_key, versions, fields, ttl)
            except RedisError:
                logger.warning("access cache unavailable", exc_info=True)
    return access_body(fields, user_key, film_key)
