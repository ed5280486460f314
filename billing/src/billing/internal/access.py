"""The movie service asks, on every play, whether a user may watch a film — or, for a catalog
page, about up to 100 films at once (the batch answers exactly what the single check would).

Allowed callers: services whose token `iss` is in BILLING_ACCESS_CHECK_SERVICES (default
`movies,admin`), `aud=billing`. Same fast path as the user endpoint.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from billing.access.router import parse_uuid
from billing.access.schemas import Access, AccessBatch, AccessBatchRequest
from billing.access.service import access_body, check, decisions
from billing.errors import Forbidden, Unprocessable

router = APIRouter(prefix="/internal/v1", tags=["internal: access (movies)"])


def _query_parameter(name: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _allowed_caller(request: Request) -> str:
    """A valid service token of a service allowed to check access (else 401/403)."""
    resources = request.app.state.resources
    issuer = resources.verifier.service(request.headers.get("authorization"))
    if issuer not in resources.settings.access_check_service_set:
        raise Forbidden(f"Service {issuer!r} may not check access.")
    return issuer


# Parameters are read by hand (documented through `openapi_extra`): FastAPI's parameter machinery
# costs more than the whole cached answer on this path.
@router.get(
    "/access",
    response_model=Access,
    openapi_extra={
        "security": [{"HTTPBearer": []}],
        "parameters": [_query_parameter("user_id"), _query_parameter("film_id")],
    },
    summary="May this user watch this film now?",
)
async def access(request: Request) -> Response:
    resources = request.app.state.resources
    query = request.query_params
    user_id, film_id = query.get("user_id"), query.get("film_id")
    _allowed_caller(request)
    if user_id is None or film_id is None:
        raise Unprocessable("user_id and film_id are required.")
    body = await check(
        sessionmaker=resources.sessionmaker,
        cache=resources.access_cache,
        user_id=str(parse_uuid(user_id, "user_id")),
        film_id=str(parse_uuid(film_id, "film_id")),
    )
    return Response(body, media_type="application/json")


@router.post(
    "/access/batch",
    response_model=AccessBatch,
    openapi_extra={"security": [{"HTTPBearer": []}]},
    summary="May this user watch each of these films now? (at most 100)",
)
async def access_batch(
    request: Request, body: AccessBatchRequest, _caller: str = Depends(_allowed_caller)
) -> Response:
    resources = request.app.state.resources
    user_id = str(body.user_id)
    film_ids = [str(film_id) for film_id in body.film_ids]
    answers = await decisions(
        sessionmaker=resources.sessionmaker,
        cache=resources.access_cache,
        user_id=user_id,
        film_ids=film_ids,
    )
    items = b",".join(
        access_body(fields, user_id, film_id)
        for fields, film_id in zip(answers, film_ids, strict=True)
    )
    return Response(
        b'{"user_id":"%s","access":[%s]}' % (user_id.encode(), items),
        media_type="application/json",
    )


@router.get(
    "/access/cache",
    summary="This process's access cache: trusted or not, users held, counters",
)
async def access_cache_state(request: Request, _caller: str = Depends(_allowed_caller)) -> dict:
    return request.app.state.resources.access_cache.state()
