"""Refund endpoints of users and the admin panel (both take an Idempotency-Key)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from billing.idempotency import run_once
from billing.outbox import commit
from billing.payments.schemas import RefundOut
from billing.refunds import service
from billing.refunds.models import Refund
from billing.resources import Resources

# Namespace of refund ids derived from idempotency keys (any fixed UUID; never change it).
REFUND_ID_NAMESPACE = uuid.UUID("6d0f3c8e-5a1b-4f3e-9a57-2b8c1e4d7f60")


async def refund_and_answer(
    *,
    resources: Resources,
    session: AsyncSession,
    owner: str,
    scope: str,
    idempotency_key: str | None,
    request: dict,
    payment_id: uuid.UUID,
    user_id: uuid.UUID | None,
    amount: int | None,
    reason: str,
    initiated_by: str,
    end_subscription: bool,
    now: datetime,
) -> JSONResponse:
    """Reserve and commit a refund, send it to pay_api, answer 201 with it (idempotently).

    The refund's id comes from the Idempotency-Key: the refund row commits before the key's answer
    does, so after a crash between the two a retry with the same key must find that refund, not
    reserve a second one."""
    refund_id = (
        uuid.uuid5(REFUND_ID_NAMESPACE, f"{owner}|{scope}|{idempotency_key}")
        if idempotency_key
        else None
    )

    async def work() -> tuple[int, dict]:
        refund = await service.reserve(
            refund_id=refund_id,
            session=session,
            payment_id=payment_id,
            user_id=user_id,
            amount=amount,
            reason=reason,
            initiated_by=initiated_by,
            end_subscription=end_subscription,
            now=now,
        )
        reserved_id = refund.id
        await commit(session, resources.access_cache)
        await service.submit(resources=resources, refund_id=reserved_id, now=now)
        refund = await session.get(Refund, reserved_id, populate_existing=True)
        return 201, RefundOut.model_validate(refund).model_dump(mode="json")

    status, body = await run_once(
        sessionmaker=resources.idempotency_sessionmaker,
        owner=owner,
        scope=scope,
        key=idempotency_key,
        request=request,
        work=work,
    )
    return JSONResponse(body, status_code=status)
