"""A manager's actions on a subscription's renewal (iss=admin), each with an Idempotency-Key:
retry the renewal now, or end the subscription now."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from billing.auth import require_service
from billing.config import Settings
from billing.db import SessionDep, utcnow
from billing.errors import NoRenewalToRetry, SubscriptionEnded, SubscriptionNotFound
from billing.idempotency import run_once
from billing.outbox import commit
from billing.payments.service import lock_subscription
from billing.renewals import service as renewals
from billing.subscriptions.models import Subscription
from billing.subscriptions.schemas import AdminSubscriptionOut

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/internal/v1/subscriptions",
    tags=["internal: admin"],
    dependencies=[Depends(require_service("admin"))],
)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="same key → same answer")
]


async def present(session, subscriptions: list[Subscription], *, settings) -> list[dict]:
    """Subscriptions as the admin sees them, each with its renewal state."""
    states = await renewals.renewal_states(session, subscriptions, settings=settings)
    return [
        AdminSubscriptionOut.model_validate(s)
        .model_copy(update={"renewal": states.get(s.id)})
        .model_dump(mode="json")
        for s in subscriptions
    ]


Act = Callable[[AsyncSession, Subscription, datetime, Settings], Awaitable[None]]


def manager_action(path: str) -> Callable[[Act], Act]:
    """Make `act` the endpoint `POST /{subscription_id}/<path>`, named as the function and
    summarized by its docstring: `act` runs under the subscription's row lock, once per
    Idempotency-Key (scope `admin.subscription.<path with underscores>`), and the answer is the
    subscription as the admin sees it."""
    action = path.replace("-", "_")

    def add_route(act: Act) -> Act:
        @router.post(
            f"/{{subscription_id}}/{path}",
            name=act.__name__,
            response_model=AdminSubscriptionOut,
            summary=act.__doc__,
        )
        async def endpoint(
            subscription_id: uuid.UUID,
            request: Request,
            session: SessionDep,
            key: IdempotencyKey = None,
        ) -> JSONResponse:
            return await _act(request, session, subscription_id, key, action, act)

        return act

    return add_route


async def _act(
    request: Request, session: AsyncSession, subscription_id: uuid.UUID, key, action: str, act: Act
) -> JSONResponse:
    resources = request.app.state.resources

    async def work() -> tuple[int, dict]:
        now = utcnow()
        if await session.get(Subscription, subscription_id) is None:
            raise SubscriptionNotFound()
        subscription = await lock_subscription(session, subscription_id)
        await act(session, subscription, now, resources.settings)
        logger.warning(
            "manager action on a subscription",
            extra={"subscription_id": str(subscription_id), "action": action},
        )
        await commit(session, resources.access_cache)
        (body,) = await present(session, [subscription], settings=resources.settings)
        return 200, body

    status, payload = await run_once(
        sessionmaker=resources.idempotency_sessionmaker,
        owner="service:admin",
        scope=f"admin.subscription.{action}",
        key=key,
        request={"subscription_id": str(subscription_id)},
        work=work,
    )
    return JSONResponse(payload, status_code=status)


@manager_action("retry-renewal")
async def retry_renewal(session, subscription, now, _settings) -> None:
    """Charge the current renewal at the worker's next pass (also after a hard decline)"""
    if not await renewals.retry_now(session, subscription, now=now):
        raise NoRenewalToRetry()


@manager_action("end")
async def end_subscription(session, subscription, now, settings) -> None:
    """End the subscription now: no access, no renewal (an open renewal is canceled)"""
    if not await renewals.end_now(session, subscription, now=now, settings=settings):
        raise SubscriptionEnded()
