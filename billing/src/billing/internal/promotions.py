"""Promo codes and personal discounts: etl pushes them (iss=etl, idempotent upserts; DELETE
deactivates: `billing.internal.upserts`), the admin reads a code's redemptions (iss=admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billing.auth import require_service
from billing.db import SessionDep
from billing.errors import PromoCodeNotFound
from billing.internal.upserts import EtlRows, add_routes
from billing.promotions import service
from billing.promotions.schemas import (
    PersonalDiscountIn,
    PromoCodeIn,
    RedemptionList,
    RedemptionOut,
)

router = APIRouter(prefix="/internal/v1", tags=["internal: promotions"])
from_etl = [Depends(require_service("etl"))]


PROMO_CODES = EtlRows(
    "promo_code",
    PromoCodeIn,
    service.upsert_promo_code,
    service.deactivate_promo_code,
    delete_note="its redemptions stay",
)
PERSONAL_DISCOUNTS = EtlRows(
    "personal_discount",
    PersonalDiscountIn,
    service.upsert_personal_discount,
    service.deactivate_personal_discount,
    id_override="discount_id",
)
for rows in (PROMO_CODES, PERSONAL_DISCOUNTS):
    add_routes(router, rows, dependencies=from_etl)


@router.get(
    "/promo-codes/{promo_code_id}/redemptions",
    response_model=RedemptionList,
    dependencies=[Depends(require_service("admin"))],
    summary="A promo code's redemptions, newest first",
)
async def list_redemptions(
    promo_code_id: uuid.UUID,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> RedemptionList:
    promo, rows, total = await service.redemptions(
        session=session, promo_code_id=promo_code_id, limit=limit, offset=offset
    )
    if promo is None:
        raise PromoCodeNotFound()
    return RedemptionList(
        promo_code_id=promo.id,
        times_redeemed=promo.times_redeemed,
        max_redemptions=promo.max_redemptions,
        items=[RedemptionOut.model_validate(r) for r in rows],
        total=total,
    )
