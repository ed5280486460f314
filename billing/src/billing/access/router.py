"""GET /api/v1/access/films/{film_id}: may the calling user watch this film now?

Called on every play, so it is kept lean: verify the JWT (verified tokens are remembered), one Redis
round trip, answer pre-assembled JSON bytes. The database is read only on a cache miss.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from billing.access.schemas import Access
from billing.access.service import check
from billing.errors import Unprocessable

router = APIRouter(prefix="/api/v1/access", tags=["access"])


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Unprocessable(f"{field} is not a valid UUID.") from None


@router.get(
    "/films/{film_id}",
    response_model=Access,
    openapi_extra={"security": [{"HTTPBearer": []}]},
    summary="May the calling user watch this film now?",
)
async def my_access(film_id: str, request: Request) -> Response:
    resources = request.app.state.resources
    user_id = resources.verifier.user_id(request.headers.get("authorization"))
    film_uuid = parse_uuid(film_id, "film_id")
    body = await check(
        sessionmaker=resources.sessionmaker,
        cache=resources.access_cache,
        user_id=user_id,
        film_id=film_uuid,
    )
    return Response(body, media_type="application/json")
