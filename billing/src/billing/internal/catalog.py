"""etl pushes films and plans here (iss=etl). Idempotent upserts; DELETE deactivates
(`billing.internal.upserts`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from billing.auth import require_service
from billing.internal.upserts import EtlRows, add_routes
from billing.plans import service
from billing.plans.schemas import FilmIn, PlanIn

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal: catalog (etl)"],
    dependencies=[Depends(require_service("etl"))],
)

add_routes(router, EtlRows("film", FilmIn, service.upsert_film, service.deactivate_film))
add_routes(router, EtlRows("plan", PlanIn, service.upsert_plan, service.deactivate_plan))
