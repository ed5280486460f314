"""Finding a customer from what a manager has in hand. Each finder reads one kind of query and
answers the users it points to; a new kind is one more finder in FINDERS."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import GatewayUnavailable
from billing.pay_api import PayApiClient, PayApiError
from billing.payments.models import Payment, Refund
from billing.promotions.models import Redemption
from billing.reports.schemas import CustomerMatch
from billing.subscriptions.models import Subscription

MAX_MATCHES = 50

Finder = Callable[[AsyncSession, PayApiClient, str], Awaitable[list[CustomerMatch]]]


async def _by_uuid(
    session: AsyncSession, _pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """A payment, refund or subscription id, or a user id billing has seen."""
    try:
        value = uuid.UUID(query)
    except ValueError:
        return []
    payment = await session.get(Payment, value)
    if payment is not None:
        return [CustomerMatch(user_id=payment.user_id, via="payment_id", payment_id=payment.id)]
    refund = await session.get(Refund, value)
    if refund is not None:
        return [
            CustomerMatch(user_id=refund.user_id, via="refund_id", payment_id=refund.payment_id)
        ]
    subscription = await session.get(Subscription, value)
    if subscription is not None:
        return [CustomerMatch(user_id=subscription.user_id, via="subscription_id")]
    seen = await session.scalar(
        union_all(
            select(Payment.user_id).where(Payment.user_id == value).limit(1),
            select(Subscription.user_id).where(Subscription.user_id == value).limit(1),
        ).limit(1)
    )
    return [CustomerMatch(user_id=value, via="user_id")] if seen else []


async def _by_payment_intent(
    session: AsyncSession, _pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """A Stripe PaymentIntent id (billing keeps it on the payment pay_api reported)."""
    if not query.startswith("pi_"):
        return []
    intent = query.split("_secret_", 1)[0]  # a client secret names its intent
    rows = await session.scalars(
        select(Payment).where(Payment.stripe_payment_intent_id == intent).limit(MAX_MATCHES)
    )
    return [CustomerMatch(user_id=p.user_id, via="payment_intent", payment_id=p.id) for p in rows]


async def _by_stripe_refund(
    session: AsyncSession, _pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """A Stripe refund id (re_...)."""
    if not query.startswith("re_"):
        return []
    rows = await session.scalars(
        select(Refund).where(Refund.stripe_refund_id == query).limit(MAX_MATCHES)
    )
    return [
        CustomerMatch(user_id=r.user_id, via="stripe_refund", payment_id=r.payment_id) for r in rows
    ]


async def _by_stripe_customer(
    _session: AsyncSession, pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """A Stripe Customer id: pay_api owns the user ↔ customer link, so it is asked."""
    if not query.startswith("cus_"):
        return []
    try:
        customer = await pay_api.find_customer(query)
    except PayApiError as exc:
        raise GatewayUnavailable() from exc
    if customer is None:
        return []
    return [CustomerMatch(user_id=uuid.UUID(customer["user_id"]), via="stripe_customer")]


async def _by_promo_code(
    session: AsyncSession, _pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """A promo code (any case): the users who redeemed it, newest first."""
    if not query or " " in query:
        return []
    rows = await session.scalars(
        select(Redemption)
        .where(func.lower(Redemption.code) == query.lower())
        .order_by(Redemption.created_at.desc())
        .limit(MAX_MATCHES)
    )
    return [
        CustomerMatch(user_id=r.user_id, via="promo_code", payment_id=r.payment_id) for r in rows
    ]


FINDERS: tuple[Finder, ...] = (
    _by_uuid,
    _by_payment_intent,
    _by_stripe_refund,
    _by_stripe_customer,
    _by_promo_code,
)


async def find_customers(
    *, session: AsyncSession, pay_api: PayApiClient, query: str
) -> list[CustomerMatch]:
    """Every user the query points to, through each finder that reads it."""
    query = query.strip()
    matches: list[CustomerMatch] = []
    for finder in FINDERS:
        matches.extend(await finder(session, pay_api, query))
    return matches[:MAX_MATCHES]
