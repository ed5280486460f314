"""What a decision is made of, held in memory: the catalog's plan→films map and a user's paid
periods. Pure data and one pure function (`decide`), no I/O — `billing.access.cache` fills and
invalidates them, and `billing.access.service.decide_in_database` is the same rule in SQL.

Invariant 5: a user may watch a film exactly when a paid, unexpired period of a plan covering that
film covers now; a film covered by no active plan is free; a film the admin withdrew is allowed to
nobody. A period is any interval the user is entitled through: a paid subscription period
(`reason: "subscription"`), and — the same shape — a grace period after a renewal did not go
through (`reason: "grace"`, until the grace end). A paid period wins over a grace (as the SQL rule
orders them); among periods of one kind the latest end is `until`. Time is passed in, so an expiry
(or a grace end) needs no message: a period that ended stops counting at its end, in every process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from billing.subscriptions.models import PAID_STATUSES

# The statuses whose current period gives access (the fill query reads only these rows);
# `past_due` also gives its grace (subscriptions.grace_until).
ENTITLING_STATUSES = PAID_STATUSES
_GRACE_STATUS = "past_due"
_SINCE_EVER = datetime.min.replace(tzinfo=UTC)


def decision_fields(allowed: bool, reason: str, until: datetime | None) -> bytes:
    """The decision's part of the Access JSON object, without braces (kept as bytes)."""
    return json.dumps(
        {"allowed": allowed, "reason": reason, "until": until.isoformat() if until else None},
        separators=(",", ":"),
    )[1:-1].encode()


FREE = decision_fields(True, "free", None)
NO_SUBSCRIPTION = decision_fields(False, "no_subscription", None)
FILM_UNAVAILABLE = decision_fields(False, "film_unavailable", None)


@dataclass(frozen=True, slots=True)
class Period:
    """One interval [start, end) through which a user holds a plan, and why."""

    plan_id: str
    start: datetime
    end: datetime
    reason: str = "subscription"
    fields: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", decision_fields(True, self.reason, self.end))


def periods_of(rows) -> tuple[Period, ...]:
    """A user's periods from their subscription rows
    (plan_id, status, period start, period end, grace_until).

    Every entitling status gives its current period; `past_due` also its grace, which counts
    from any time until `grace_until` (the period it follows has ended)."""
    periods = []
    for plan_id, status, start, end, grace_until in rows:
        if status not in ENTITLING_STATUSES:
            continue
        if start is not None and end is not None:
            # From any time, as the SQL rule: a renewal paid before the old end starts the new
            # period in the future, and the paid time stays one unbroken run up to its end.
            periods.append(Period(str(plan_id), _SINCE_EVER, end))
        if status == _GRACE_STATUS and grace_until is not None:
            periods.append(Period(str(plan_id), _SINCE_EVER, grace_until, "grace"))
    return tuple(periods)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The catalog's part of every decision (plans and films as etl last pushed them)."""

    # Films each plan covers by name, for every plan (a paid period of a deactivated plan still
    # covers its films); plans that cover everything.
    plans_of_film: dict[str, frozenset[str]]
    all_films_plans: frozenset[str]
    # Films some ACTIVE plan covers (a film no active plan covers is free), and whether an active
    # plan covers every film.
    covered_films: frozenset[str]
    an_active_plan_covers_all: bool
    # Films the admin withdrew: allowed to nobody.
    withdrawn_films: frozenset[str]

    @classmethod
    def build(cls, *, plans, plan_films, withdrawn_films) -> Catalog:
        """From rows: plans (id, active, all_films), plan_films (plan_id, film_id), film ids."""
        active = {str(pid) for pid, is_active, _ in plans if is_active}
        all_films = frozenset(str(pid) for pid, _, covers_all in plans if covers_all)
        plans_of_film: dict[str, set[str]] = {}
        covered: set[str] = set()
        for plan_id, film_id in plan_films:
            plan_key, film_key = str(plan_id), str(film_id)
            plans_of_film.setdefault(film_key, set()).add(plan_key)
            if plan_key in active:
                covered.add(film_key)
        return cls(
            plans_of_film={film: frozenset(ids) for film, ids in plans_of_film.items()},
            all_films_plans=all_films,
            covered_films=frozenset(covered),
            an_active_plan_covers_all=bool(all_films & active),
            withdrawn_films=frozenset(str(f) for f in withdrawn_films),
        )


_NO_PLANS: frozenset[str] = frozenset()


def _ranks_above(period: Period, best: Period) -> bool:
    """A paid period over a grace; then the later end."""
    if period.reason != best.reason:
        return period.reason == "subscription"
    return period.end > best.end


def decide(catalog: Catalog, periods: tuple[Period, ...], film_id: str, now: datetime) -> bytes:
    """The decision's JSON fields for this user (their periods) and film at `now`."""
    if film_id in catalog.withdrawn_films:
        return FILM_UNAVAILABLE
    best: Period | None = None
    if periods:
        covering = catalog.plans_of_film.get(film_id, _NO_PLANS)
        for period in periods:
            if (
                period.start <= now < period.end
                and (period.plan_id in covering or period.plan_id in catalog.all_films_plans)
                and (best is None or _ranks_above(period, best))
            ):
                best = period
    if best is not None:
        return best.fields
    if catalog.an_active_plan_covers_all or film_id in catalog.covered_films:
        return NO_SUBSCRIPTION
    return FREE
