from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse

from billing.auth import CurrentUser
from billing.db import SessionDep, utcnow
from billing.payments import service
from billing.payments.schemas import PaymentOut, PaymentPage, RefundOut
from billing.refunds.router import refund_and_answer
from billing.refunds.schemas import UserRefundIn

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


@router.get("", response_model=PaymentPage, summary="The user's payments, newest first")
async def list_mine(
    user_id: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
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


@router.post(
    "/{payment_id}/refund",
    response_model=RefundOut,
    status_code=201,
    summary="Full refund of the user's own payment, within the plan's refund window",
)
async def refund_mine(
    payment_id: uuid.UUID,
    request: Request,
    user_id: CurrentUser,
    session: SessionDep,
    body: Annotated[UserRefundIn | None, Body()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    body = body or UserRefundIn()
    return await refund_and_answer(
        resources=request.app.state.resources,
        session=session,
        owner=str(user_id),
        scope="payments.refund",
        idempotency_key=idempotency_key,
        request={"payment_id": str(payment_id), **body.model_dump()},
        payment_id=payment_id,
        user_id=user_id,
        amount=None,
        reason=body.reason,
        initiated_by="user",
        end_subscription=True,
        now=utcnow(),
    )
