"""The user's refund endpoint (a manager's is in `billing.internal.admin`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse

from billing.auth import CurrentUser
from billing.db import SessionDep, utcnow
from billing.payments.schemas import RefundOut
from billing.refunds import service
from billing.refunds.schemas import UserRefundIn

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


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
    status, answer = await service.refund_once(
        resources=request.app.state.resources,
        session=session,
        request=service.RefundRequest.by_user(
            payment_id=payment_id, user_id=user_id, reason=body.reason
        ),
        owner=str(user_id),
        scope="payments.refund",
        idempotency_key=idempotency_key,
        fingerprint={"payment_id": str(payment_id), **body.model_dump()},
        now=utcnow(),
    )
    return JSONResponse(answer, status_code=status)
