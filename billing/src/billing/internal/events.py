"""pay_api reports payment and refund changes here (iss=pay_api): one event, or a batch."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from billing.auth import require_service
from billing.db import SessionDep, utcnow
from billing.outbox import commit
from billing.settlement.events import (
    BatchResult,
    EventBatch,
    EventResult,
    PaymentEvent,
    apply_event,
    apply_events,
)

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


@router.post(
    "/payment-events/batch",
    response_model=BatchResult,
    summary="Apply 1-100 pay_api events in order, in one transaction; one result per event",
    description=(
        "Each event is applied as the single endpoint would, inside a SAVEPOINT of its own: an "
        "event refused (404 unknown payment, 422 mismatch) or hit by a database error (409 "
        "`transaction_conflict`: a deadlock or serialization failure; 500) is rolled back alone "
        "and reported with the error the single endpoint would answer; the others are applied "
        "and committed together. `request_id`, when given, is the request id of that event's "
        "log lines."
    ),
)
async def payment_events_batch(
    batch: EventBatch, request: Request, session: SessionDep
) -> BatchResult:
    resources = request.app.state.resources
    results = await apply_events(session=session, events=batch.events, settings=resources.settings)
    await commit(session, resources.access_cache)
    return BatchResult(results=results)
