"""Liveness, readiness and metrics endpoints (docs/contracts.md, "Health, readiness, metrics").

Liveness says the process answers and asks nothing else, so an outage of the database never
restarts healthy processes. Readiness says this copy can serve: its database and Redis answer
and the schema is at the migrations' head (a copy of a newer release waits for its migration;
an older one keeps serving a schema it knows). Compose's health checks and nginx use readiness.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from pathlib import Path

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from billing import clock
from billing.metrics import StateCollector, exposition

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# billing/alembic next to billing/src (the repository's layout, and the images' /app).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "alembic"
READINESS_TIMEOUT_SECONDS = 2.0


@lru_cache
def migration_heads() -> frozenset[str]:
    """The revisions this code expects the schema to be at."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", summary="Readiness: database, Redis, migrations at head")
async def ready(request: Request) -> JSONResponse:
    resources = request.app.state.resources
    checks = {"database": "ok", "migrations": "ok", "redis": "ok"}
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            async with resources.engine.connect() as connection:
                revisions = set(
                    await connection.scalars(text("SELECT version_num FROM alembic_version"))
                )
        if revisions != migration_heads():
            checks["migrations"] = "behind" if revisions else "none"
    except Exception:
        logger.warning("readiness: the database did not answer", exc_info=True)
        checks["database"], checks["migrations"] = "unavailable", "unknown"
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await resources.redis.ping()
    except Exception:
        logger.warning("readiness: Redis did not answer", exc_info=True)
        checks["redis"] = "unavailable"
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {
            "code": "not_ready",
            "message": "This copy of billing cannot serve yet.",
            "details": checks,
        },
        status_code=503,
    )


@router.get("/metrics", summary="Prometheus metrics (not served through nginx)")
async def metrics(request: Request) -> Response:
    resources = request.app.state.resources
    state = await StateCollector(
        resources.engine,
        now=clock.now(),
        renewal_lead_seconds=resources.settings.renewal_lead_seconds,
    ).families()
    return Response(exposition(state), media_type=CONTENT_TYPE_LATEST)
