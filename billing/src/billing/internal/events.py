"""pay_api reports payment and refund changes here (iss=pay_api)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from billing.auth import require_service
from billing.db import SessionDep, utcnow
from billing.outbox import commit
from billing.settlement.events import EventResult, PaymentEvent, apply_event

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal: pay_api"],
    dependencies=[Depends(require_service("pay_api"))],
)


@router.post(
    "/payment-events",
    response_model=EventResult,
    summary="Apply a pay_api event once (404 unknown payment: retry later; 422 mismatch)",
)
async def payment_event(event: PaymentEvent, request: Request, session: SessionDep) -> EventResult:
    resources = request.app.state.resources
    applied = await apply_event(
        session=session, event=event, settings=resources.settings, now=utcnow()
    )
    await commit(session, resources.access_cache)
    return EventResult(applied=applied)
