"""Promo codes and personal discounts: etl pushes them (iss=etl, idempotent upserts; DELETE
deactivates), the admin reads a code's redemptions (iss=admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billing.auth import require_service
from billing.db import SessionDep
from billing.errors import PromoCodeNotFound
from billing.plans.schemas import UpsertResult
from billing.promotions import service
from billing.promotions.models import PersonalDiscount, PromoCode
from billing.promotions.schemas import (
    PersonalDiscountIn,
    PromoCodeIn,
    RedemptionList,
    RedemptionOut,
)

router = APIRouter(prefix="/internal/v1", tags=["internal: promotions"])
from_etl = [Depends(require_service("etl"))]


@router.put(
    "/promo-codes/{promo_code_id}",
    response_model=UpsertResult,
    dependencies=from_etl,
    summary="Create or update a promo code",
)
async def put_promo_code(
    promo_code_id: uuid.UUID, body: PromoCodeIn, session: SessionDep
) -> UpsertResult:
    changed = await service.upsert_promo_code(
        session=session, promo_code_id=promo_code_id, data=body
    )
    await session.commit()
    return UpsertResult(id=promo_code_id, changed=changed)


@router.delete(
    "/promo-codes/{promo_code_id}",
    response_model=UpsertResult,
    dependencies=from_etl,
    summary="Deactivate a promo code (its redemptions stay)",
)
async def delete_promo_code(promo_code_id: uuid.UUID, session: SessionDep) -> UpsertResult:
    changed = await service.deactivate(session=session, model=PromoCode, row_id=promo_code_id)
    await session.commit()
    return UpsertResult(id=promo_code_id, changed=changed)


@router.put(
    "/personal-discounts/{discount_id}",
    response_model=UpsertResult,
    dependencies=from_etl,
    summary="Create or update a personal discount",
)
async def put_personal_discount(
    discount_id: uuid.UUID, body: PersonalDiscountIn, session: SessionDep
) -> UpsertResult:
    changed = await service.upsert_personal_discount(
        session=session, discount_id=discount_id, data=body
    )
    await session.commit()
    return UpsertResult(id=discount_id, changed=changed)


@router.delete(
    "/personal-discounts/{discount_id}",
    response_model=UpsertResult,
    dependencies=from_etl,
    summary="Deactivate a personal discount",
)
async def delete_personal_discount(discount_id: uuid.UUID, session: SessionDep) -> UpsertResult:
    changed = await service.deactivate(session=session, model=PersonalDiscount, row_id=discount_id)
    await session.commit()
    return UpsertResult(id=discount_id, changed=changed)


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
