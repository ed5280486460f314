"""Access decisions (invariant 5): a user may watch a film exactly when a paid, unexpired period
of a plan covering that film covers now; a film covered by no active plan is free; a film the
admin withdrew (inactive) is allowed to nobody.

Answered from memory (`billing.access.cache`, `billing.access.entitlements`); the same rule in SQL
(`decide`) answers while memory is not trusted."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.access.cache import AccessCache
from billing.access.entitlements import decision_fields
from billing.plans.models import Film, Plan, PlanFilm
from billing.subscriptions.models import PAID_STATUSES, Subscription

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "subscription" | "grace" | "free" | "no_subscription" | "film_unavailable"
    until: datetime | None

    def fields_json(self) -> bytes:
        """The decision's part of the Access JSON object, without braces."""
        return decision_fields(self.allowed, self.reason, self.until)


def _covers_film(film_id: uuid.UUID):
    return or_(
        Plan.all_films,
        exists().where(PlanFilm.plan_id == Plan.id, PlanFilm.film_id == film_id),
    )


async def _latest_covering(
    session: AsyncSession, column, *conditions, user_id: uuid.UUID, film_id: uuid.UUID
) -> datetime | None:
    """The latest `column` of the user's subscriptions that meet `conditions`, on plans that
    cover the film (None: there is none)."""
    return await session.scalar(
        select(func.max(column))
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.user_id == user_id, *conditions, _covers_film(film_id))
    )


async def decide(
    *, session: AsyncSession, user_id: uuid.UUID, film_id: uuid.UUID, now: datetime
) -> Decision:
    """Decide in SQL: the reference rule, used while memory is not trusted (and by the tests
    that compare it with the in-memory decision, `billing.access.entitlements.decide`)."""
    film_active = await session.scalar(select(Film.active).where(Film.id == film_id))
    if film_active is False:
        # Withdrawn (deactivated or deleted in the admin): nobody watches it, paid or not.
        return Decision(False, "film_unavailable", None)
    until = await _latest_covering(
        session,
        Subscription.current_period_end,
        Subscription.status.in_(PAID_STATUSES),
        # No lower bound: a renewal paid before the old end starts the new period in the
        # future, and the paid time stays one unbroken run up to current_period_end.
        Subscription.current_period_end > now,
        user_id=user_id,
        film_id=film_id,
    )
    if until is not None:
        return Decision(True, "subscription", until)
    # A renewal that did not go through keeps access until the grace period ends.
    grace_until = await _latest_covering(
        session,
        Subscription.grace_until,
        Subscription.status == "past_due",
        Subscription.grace_until > now,
        user_id=user_id,
        film_id=film_id,
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


async def decisions(
    *, sessionmaker, cache: AccessCache, user_id: str, film_ids: list[str]
) -> list[bytes]:
    """Decision fields for one user and these films (canonical UUID strings): from memory (see
    billing.access.cache), or in SQL while memory is not trusted."""
    try:
        answer = await cache.decisions(user_id, film_ids)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # The cache's own connections failed: SQL through the main pool (its errors are mapped).
        logger.warning("access cache could not read PostgreSQL", exc_info=True)
        answer = None
    if answer is not None:
        return answer
    cache.counters.database_answers += 1
    now = cache.clock()
    user = uuid.UUID(user_id)
    async with sessionmaker() as session:
        return [
            (
                await decide(session=session, user_id=user, film_id=uuid.UUID(film), now=now)
            ).fields_json()
            for film in film_ids
        ]


async def check(*, sessionmaker, cache: AccessCache, user_id: str, film_id: str) -> bytes:
    """The Access answer for one user and film (canonical UUID strings)."""
    fields = cache.cached(user_id, film_id)
    if fields is None:
        (fields,) = await decisions(
            sessionmaker=sessionmaker, cache=cache, user_id=user_id, film_ids=[film_id]
        )
    return access_body(fields, user_id, film_id)
