from __future__ import annotations

import uuid
from typing import Annotated, TypedDict

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from billing.auth import CurrentUser
from billing.db import SessionDep, utcnow
from billing.idempotency import run_once
from billing.resources import Resources
from billing.subscriptions import service
from billing.subscriptions.schemas import (
    CancelOut,
    CardLinkOut,
    PurchaseIn,
    PurchaseOut,
    SubscriptionList,
    SubscriptionOut,
)

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Same key + same body → same answer (≤ 255 chars)"),
]


@router.post(
    "",
    response_model=PurchaseOut,
    status_code=201,
    responses={200: {"model": PurchaseOut, "description": "An open payment for this plan exists"}},
    summary="Buy a plan: a subscription and its first payment (with the payment page URL)",
)
async def buy(
    body: PurchaseIn,
    request: Request,
    user_id: CurrentUser,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    resources = request.app.state.resources

    async def work() -> tuple[int, dict]:
        status, result = await service.purchase(
            resources=resources,
            session=session,
            user_id=user_id,
            plan_id=body.plan_id,
            promo_code=body.promo_code,
            now=utcnow(),
        )
        return status, result.model_dump(mode="json")

    status, payload = await run_once(
        sessionmaker=resources.idempotency_sessionmaker,
        owner=str(user_id),
        scope="subscriptions.create",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        work=work,
    )
    return JSONResponse(payload, status_code=status)


@router.get("", response_model=SubscriptionList, summary="The user's subscriptions")
async def list_mine(user_id: CurrentUser, session: SessionDep) -> SubscriptionList:
    rows = await service.list_for_user(session=session, user_id=user_id)
    return SubscriptionList(
        items=[SubscriptionOut.model_validate(s) for s in rows], total=len(rows)
    )


class OwnSubscription(TypedDict):
    """What every action on one of the user's own subscriptions hands to the service."""

    resources: Resources
    session: AsyncSession
    user_id: uuid.UUID
    subscription_id: uuid.UUID


def own_subscription(
    subscription_id: uuid.UUID, request: Request, user_id: CurrentUser, session: SessionDep
) -> OwnSubscription:
    return OwnSubscription(
        resources=request.app.state.resources,
        session=session,
        user_id=user_id,
        subscription_id=subscription_id,
    )


OwnSubscriptionDep = Annotated[OwnSubscription, Depends(own_subscription)]


@router.post(
    "/{subscription_id}/cancel",
    response_model=CancelOut,
    summary="Cancel: refund within the plan's refund window, else stop renewal",
)
async def cancel(target: OwnSubscriptionDep) -> CancelOut:
    return await service.cancel(**target, now=utcnow())


@router.post(
    "/{subscription_id}/resume",
    response_model=SubscriptionOut,
    summary="Resume: undo a cancel at period end while the period lasts (renews again)",
    responses={409: {"description": "subscription_not_resumable: ended, or its period is over"}},
)
async def resume(target: OwnSubscriptionDep) -> SubscriptionOut:
    return SubscriptionOut.model_validate(await service.resume(**target, now=utcnow()))


@router.post(
    "/{subscription_id}/card",
    response_model=CardLinkOut,
    summary="A signed link to give another card (pays a renewal in dunning at once)",
)
async def card(target: OwnSubscriptionDep) -> CardLinkOut:
    return await service.card_link(**target)
