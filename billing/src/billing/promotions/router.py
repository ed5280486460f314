from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from billing.auth import CurrentUser
from billing.db import SessionDep, utcnow
from billing.plans import service as plans
from billing.promotions import service
from billing.promotions.schemas import PriceOut

router = APIRouter(prefix="/api/v1/plans", tags=["plans"])

_REFUSALS = (
    "promo_code_unknown, promo_code_not_yet_valid, promo_code_expired, promo_code_exhausted, "
    "promo_code_not_for_plan, promo_code_first_purchase_only, promo_code_already_used, "
    "amount_below_minimum"
)


@router.get(
    "/{plan_id}/price",
    response_model=PriceOut,
    summary="What buying this plan costs me now (with a promo code), and what renewals will cost",
    responses={422: {"description": f"The code cannot be used: `code` is one of {_REFUSALS}"}},
)
async def price(
    plan_id: uuid.UUID,
    user_id: CurrentUser,
    session: SessionDep,
    promo_code: Annotated[str | None, Query(max_length=64)] = None,
) -> PriceOut:
    plan = await plans.get_buyable(session=session, plan_id=plan_id)
    quote = await service.quote(
        session=session, plan=plan, user_id=user_id, promo_code=promo_code, now=utcnow()
    )
    return service.present_quote(quote)
