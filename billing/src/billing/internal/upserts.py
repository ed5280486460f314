"""The one shape of etl's pushes (iss=etl), for every kind of row it copies from the admin: films,
plans, promo codes, personal discounts. `PUT /<rows>/{id}` creates or updates the row and answers
whether anything changed; `DELETE /<rows>/{id}` deactivates it (nothing is deleted). Both are
idempotent, and both commit through `billing.outbox.commit`, so a change that touches access
(films, plans) reaches every billing process with its transaction.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the body's
# model is a value of each kind, not a name this module could resolve later.
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel

from billing.db import SessionDep
from billing.outbox import commit
from billing.plans.schemas import UpsertResult


@dataclass(frozen=True)
class EtlRows:
    """One kind of row etl pushes, named by its noun: "promo_code" is the path
    /promo-codes/{promo_code_id}, the endpoints put_promo_code and delete_promo_code (their OpenAPI
    operations), summarized "Create or update a promo code" and "Deactivate a promo code".

    `upsert(session=, data=, <id_name>=)` and `deactivate(session=, <id_name>=)` are the feature's
    service functions (not committed; True when something changed), which name the row's id as
    the path does."""

    noun: str
    body: type[BaseModel]
    upsert: Callable[..., Awaitable[bool]]
    deactivate: Callable[..., Awaitable[bool]]
    id_override: str = ""  # the path's id when it is not "<noun>_id"
    delete_note: str = ""  # why deactivating is enough, added to the DELETE summary

    @property
    def id_name(self) -> str:
        return self.id_override or f"{self.noun}_id"

    @property
    def path(self) -> str:
        return f"/{self.noun.replace('_', '-')}s/{{{self.id_name}}}"


def add_routes(router: APIRouter, rows: EtlRows, *, dependencies: list[Any] | None = None) -> None:
    """Add the PUT (create or update) and DELETE (deactivate) endpoints of one kind of row."""
    RowId = Annotated[uuid.UUID, Path(alias=rows.id_name)]
    words = rows.noun.replace("_", " ")
    note = f" ({rows.delete_note})" if rows.delete_note else ""
    shared: dict[str, Any] = {"response_model": UpsertResult, "dependencies": dependencies}

    @router.put(rows.path, name=f"put_{rows.noun}", summary=f"Create or update a {words}", **shared)
    async def put(
        row_id: RowId,
        body: rows.body,  # type: ignore[name-defined]
        request: Request,
        session: SessionDep,
    ) -> UpsertResult:
        changed = await rows.upsert(session=session, data=body, **{rows.id_name: row_id})
        return await _committed(request, session, row_id, changed)

    @router.delete(
        rows.path, name=f"delete_{rows.noun}", summary=f"Deactivate a {words}{note}", **shared
    )
    async def delete(row_id: RowId, request: Request, session: SessionDep) -> UpsertResult:
        changed = await rows.deactivate(session=session, **{rows.id_name: row_id})
        return await _committed(request, session, row_id, changed)


async def _committed(
    request: Request, session: SessionDep, row_id: uuid.UUID, changed: bool
) -> UpsertResult:
    await commit(session, request.app.state.resources.access_cache)
    return UpsertResult(id=row_id, changed=changed)
