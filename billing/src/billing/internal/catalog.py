"""etl pushes films and plans here (iss=etl). Idempotent upserts; DELETE deactivates."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request

from billing.auth import require_service
from billing.db import SessionDep
from billing.outbox import commit
from billing.plans import service
from billing.plans.schemas import FilmIn, PlanIn, UpsertResult

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal: catalog (etl)"],
    dependencies=[Depends(require_service("etl"))],
)


@router.put("/films/{film_id}", response_model=UpsertResult, summary="Create or update a film")
async def put_film(
    film_id: uuid.UUID, body: FilmIn, request: Request, session: SessionDep
) -> UpsertResult:
    changed = await service.upsert_film(session=session, film_id=film_id, data=body)
    await commit(session, request.app.state.resources.access_cache)
    return UpsertResult(id=film_id, changed=changed)


@router.delete("/films/{film_id}", response_model=UpsertResult, summary="Deactivate a film")
async def delete_film(film_id: uuid.UUID, request: Request, session: SessionDep) -> UpsertResult:
    changed = await service.deactivate_film(session=session, film_id=film_id)
    await commit(session, request.app.state.resources.access_cache)
    return UpsertResult(id=film_id, changed=changed)


@router.put("/plans/{plan_id}", response_model=UpsertResult, summary="Create or update a plan")
async def put_plan(
    plan_id: uuid.UUID, body: PlanIn, request: Request, session: SessionDep
) -> UpsertResult:
    changed = await service.upsert_plan(session=session, plan_id=plan_id, data=body)
    await commit(session, request.app.state.resources.access_cache)
    return UpsertResult(id=plan_id, changed=changed)


@router.delete("/plans/{plan_id}", response_model=UpsertResult, summary="Deactivate a plan")
async def delete_plan(plan_id: uuid.UUID, request: Request, session: SessionDep) -> UpsertResult:
    changed = await service.deactivate_plan(session=session, plan_id=plan_id)
    await commit(session, request.app.state.resources.access_cache)
    return UpsertResult(id=plan_id, changed=changed)
