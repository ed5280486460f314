from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from billing.auth import CurrentUser
from billing.db import SessionDep
from billing.payments import service
from billing.payments.schemas import PaymentOut, PaymentPage

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


@router.get("", response_model=PaymentPage, summary="The user's payments, newest first")
async def list_mine(
    user_id: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,  # bounded (an int8 overflow is no 5xx)
) -> PaymentPage:
    payments, total = await service.list_for_user(
        session=session, user_id=user_id, limit=limit, offset=offset
    )
    items = await service.present(session=session, payments=payments)
    return PaymentPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{payment_id}", response_model=PaymentOut, summary="One of the user's payments")
async def get_mine(payment_id: uuid.UUID, user_id: CurrentUser, session: SessionDep) -> PaymentOut:
    payment = await service.get_own(session=session, user_id=user_id, payment_id=payment_id)
    (item,) = await service.present(session=session, payments=[payment])
    return item
