"""What the admin panel reads and does (iss=admin): a user's payments, subscriptions, refunds;
one payment; a refund (partial allowed, optionally ending the subscription)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from billing.auth import require_service
from billing.db import SessionDep, utcnow
from billing.errors import PaymentNotFound
from billing.internal.renewals import present as present_subscriptions
from billing.payments import service as payments
from billing.payments.models import LedgerEntry, Payment, Refund
from billing.payments.schemas import (
    AdminPaymentDetail,
    AdminPaymentOut,
    LedgerEntryOut,
    RefundOut,
)
from billing.refunds import service as refunds
from billing.refunds.schemas import AdminRefundIn
from billing.subscriptions.models import Subscription
from billing.subscriptions.schemas import AdminSubscriptionOut

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal: admin"],
    dependencies=[Depends(require_service("admin"))],
)


class AdminPaymentList(BaseModel):
    items: list[AdminPaymentOut]
    total: int


class AdminSubscriptionList(BaseModel):
    items: list[AdminSubscriptionOut]
    total: int


class RefundList(BaseModel):
    items: list[RefundOut]
    total: int


@router.get("/users/{user_id}/payments", response_model=AdminPaymentList)
async def user_payments(user_id: uuid.UUID, session: SessionDep) -> AdminPaymentList:
    rows = list(
        await session.scalars(
            select(Payment).where(Payment.user_id == user_id).order_by(Payment.created_at.desc())
        )
    )
    items = await payments.present(session=session, payments=rows, admin=True)
    return AdminPaymentList(items=items, total=len(items))


@router.get("/users/{user_id}/subscriptions", response_model=AdminSubscriptionList)
async def user_subscriptions(
    user_id: uuid.UUID, request: Request, session: SessionDep
) -> AdminSubscriptionList:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.created_at.desc())
    )
    items = await present_subscriptions(
        session, list(rows), settings=request.app.state.resources.settings
    )
    return AdminSubscriptionList(items=items, total=len(items))


@router.get("/users/{user_id}/refunds", response_model=RefundList)
async def user_refunds(user_id: uuid.UUID, session: SessionDep) -> RefundList:
    rows = await session.scalars(
        select(Refund).where(Refund.user_id == user_id).order_by(Refund.created_at.desc())
    )
    items = [RefundOut.model_validate(r) for r in rows]
    return RefundList(items=items, total=len(items))


@router.get("/payments", response_model=AdminPaymentList)
async def all_payments(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,  # bounded (an int8 overflow is no 5xx)
) -> AdminPaymentList:
    """Every payment, oldest first (for audits: the chaos run compares them with Stripe)."""
    rows = list(
        await session.scalars(
            select(Payment).order_by(Payment.created_at, Payment.id).limit(limit).offset(offset)
        )
    )
    items = await payments.present(session=session, payments=rows, admin=True)
    total = await session.scalar(select(func.count()).select_from(Payment))
    return AdminPaymentList(items=items, total=total or 0)


@router.get("/payments/{payment_id}", response_model=AdminPaymentDetail)
async def payment(payment_id: uuid.UUID, session: SessionDep) -> AdminPaymentDetail:
    row = await session.get(Payment, payment_id)
    if row is None:
        raise PaymentNotFound()
    (item,) = await payments.present(session=session, payments=[row], admin=True)
    ledger = await session.scalars(
        select(LedgerEntry).where(LedgerEntry.payment_id == payment_id).order_by(LedgerEntry.id)
    )
    return AdminPaymentDetail(
        **item.model_dump(), ledger=[LedgerEntryOut.model_validate(e) for e in ledger]
    )


@router.post("/payments/{payment_id}/refunds", response_model=RefundOut, status_code=201)
async def refund(
    payment_id: uuid.UUID,
    body: AdminRefundIn,
    request: Request,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    status, answer = await refunds.refund_once(
        resources=request.app.state.resources,
        session=session,
        request=refunds.RefundRequest(
            payment_id=payment_id,
            amount=body.amount,
            reason=body.reason,
            initiated_by="admin",
            end_subscription=body.end_subscription,
        ),
        owner="service:admin",
        scope="admin.refund",
        idempotency_key=idempotency_key,
        fingerprint={"payment_id": str(payment_id), **body.model_dump()},
        now=utcnow(),
    )
    return JSONResponse(answer, status_code=status)
