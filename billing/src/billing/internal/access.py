"""The movie service asks, on every play, whether a user may watch a film.

Allowed callers: services whose token `iss` is in BILLING_ACCESS_CHECK_SERVICES (default
`movies,admin`), `aud=billing`. Same fast path as the user endpoint.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from billing.access.router import parse_uuid
from billing.access.schemas import Access
from billing.access.service import check
from billing.errors import Forbidden, Unprocessable

router = APIRouter(prefix="/internal/v1", tags=["internal: access (movies)"])


def _query_parameter(name: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


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
    issuer = resources.verifier.service(request.headers.get("authorization"))
    if issuer not in resources.settings.access_check_service_set:
        raise Forbidden(f"Service {issuer!r} may not check access.")
    if user_id is None or film_id is None:
        raise Unprocessable("user_id and film_id are required.")
    body = await check(
        sessionmaker=resources.sessionmaker,
        cache=resources.access_cache,
        user_id=parse_uuid(user_id, "user_id"),
        film_id=parse_uuid(film_id, "film_id"),
    )
    return Response(body, media_type="application/json")
