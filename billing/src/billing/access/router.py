"""GET /api/v1/access/films/{film_id}: may the calling user watch this film now?

Called on every play, so it is kept lean: verify the JWT (verified tokens are remembered), decide
from memory (`billing.access.cache`), answer pre-assembled JSON bytes. Valid checks are answered by
`billing.access.fastpath` before routing; this route documents them and answers every error.
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


# The path parameter is read by hand (documented through `openapi_extra`): FastAPI's parameter
# machinery costs more than the whole cached answer on this path.
@router.get(
    "/films/{film_id}",
    response_model=Access,
    openapi_extra={
        "security": [{"HTTPBearer": []}],
        "parameters": [
            {
                "name": "film_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
        ],
    },
    summary="May the calling user watch this film now?",
)
async def my_access(request: Request) -> Response:
    resources = request.app.state.resources
    film_id = request.path_params["film_id"]
    user_id = resources.verifier.user_id(request.headers.get("authorization"))
    film_uuid = parse_uuid(film_id, "film_id")
    body = await check(
        sessionmaker=resources.sessionmaker,
        cache=resources.access_cache,
        user_id=str(user_id),
        film_id=str(film_uuid),
    )
    return Response(body, media_type="application/json")
