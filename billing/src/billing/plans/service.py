"""Plans and films: listing for users, idempotent upserts and deactivation for etl."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from billing.errors import PlanInactive, PlanNotFound
from billing.outbox import note_catalog_change
from billing.plans.models import Film, Plan, PlanFilm
from billing.plans.schemas import FilmIn, Money, Period, PlanIn, PlanOut


def present(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        name=plan.name,
        description=plan.description,
        price=Money(amount=plan.price_amount, currency=plan.currency),
        period=Period(unit=plan.period_unit, count=plan.period_count),
        refund_window_days=plan.refund_window_days,
        all_films=plan.all_films,
        film_ids=plan.film_ids,
    )


async def list_active(*, session: AsyncSession) -> list[Plan]:
    """Plans a user can buy now."""
    plans = await session.scalars(
        select(Plan).where(Plan.active).order_by(Plan.price_amount, Plan.name)
    )
    return list(plans)


async def get_buyable(*, session: AsyncSession, plan_id: uuid.UUID) -> Plan:
    """The plan, if it exists and is on sale."""
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise PlanNotFound()
    if not plan.active:
        raise PlanInactive()
    return plan


async def upsert_film(*, session: AsyncSession, film_id: uuid.UUID, data: FilmIn) -> bool:
    """Create or update a film; False when it already was exactly so. Not committed."""
    film = await session.get(Film, film_id, with_for_update=True)
    if film is None:
        await session.execute(
            insert(Film)
            .values(id=film_id, title=data.title, active=data.active)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        note_catalog_change(session, "film created")
        return True
    if (film.title, film.active) == (data.title, data.active):
        return False
    film.title, film.active, film.updated_at = data.title, data.active, utcnow()
    note_catalog_change(session, "film changed")
    return True


async def deactivate_film(*, session: AsyncSession, film_id: uuid.UUID) -> bool:
    """Mark a film inactive (nothing is deleted). Unknown: nothing to do (etl may retry)."""
    return await _deactivate(session, Film, film_id, "film deactivated")


def _plan_values(data: PlanIn) -> dict:
    return data.model_dump(exclude={"film_ids"})


async def upsert_plan(*, session: AsyncSession, plan_id: uuid.UUID, data: PlanIn) -> bool:
    """Create or update a plan and the films it covers; False when nothing changed. Not committed."""
    plan = await session.get(Plan, plan_id, with_for_update=True)
    values = _plan_values(data)
    wanted_films = sorted(set(data.film_ids))
    if plan is None:
        inserted = await session.scalar(
            insert(Plan).values(id=plan_id, **values).on_conflict_do_nothing().returning(Plan.id)
        )
        if inserted is None:  # created concurrently: update that one instead
            return await upsert_plan(session=session, plan_id=plan_id, data=data)
        for film_id in wanted_films:
            session.add(PlanFilm(plan_id=plan_id, film_id=film_id))
        note_catalog_change(session, "plan created")
        return True
    current = {key: getattr(plan, key) for key in values}
    if current == values and sorted(plan.film_ids) == wanted_films:
        return False
    for key, value in values.items():
        setattr(plan, key, value)
    plan.updated_at = utcnow()
    kept = {link.film_id: link for link in plan.films}
    plan.films = [kept.get(f) or PlanFilm(plan_id=plan_id, film_id=f) for f in wanted_films]
    note_catalog_change(session, "plan changed")
    return True


async def deactivate_plan(*, session: AsyncSession, plan_id: uuid.UUID) -> bool:
    """Take a plan off sale; holders keep what they paid for. False if unknown or already off."""
    return await _deactivate(session, Plan, plan_id, "plan deactivated")


async def _deactivate(session: AsyncSession, model: type[Film | Plan], row_id, reason: str) -> bool:
    """Inactive (nothing is deleted), a change of the catalog; False if unknown or already so."""
    row = await session.get(model, row_id, with_for_update=True)
    if row is None or not row.active:
        return False
    row.active, row.updated_at = False, utcnow()
    note_catalog_change(session, reason)
    return True
