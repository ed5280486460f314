"""What a renewal costs: the ONE function that says it (discounts hook in here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billing.plans.models import Plan
from billing.promotions import pricing
from billing.promotions.service import may_discount, period_price
from billing.subscriptions.models import Subscription


@dataclass(frozen=True)
class RenewalPrice:
    """A renewal's price; its fields are the renewal payment's columns of the same names."""

    amount: int  # minor units: the net, what is charged (0: fully discounted, nothing to charge)
    currency: str
    description: str
    gross_amount: int = 0
    discount_amount: int = 0
    promo_code: str | None = None


async def renewal_amount(*, session: AsyncSession, subscription: Subscription) -> RenewalPrice:
    """The price of the subscription's next period: the plan's price when the renewal is written
    (a manager's price change applies from the next renewal on), less the discount that applies
    to that period (`promotions.service.period_price`: the redeemed code while it lasts, a
    personal discount while valid)."""
    plan = await session.get(Plan, subscription.plan_id)
    charge = await period_price(
        session=session,
        subscription=subscription,
        period_start=subscription.current_period_end,
        gross=plan.price_amount,
        currency=plan.currency,
    )
    return RenewalPrice(
        amount=charge.price.net,
        currency=plan.currency,
        description=f"{plan.name} ({plan.period_count} {plan.period_unit}), renewal",
        gross_amount=charge.price.gross,
        discount_amount=charge.price.discount,
        promo_code=charge.promo_code,
    )


async def renewal_amounts(
    *, session: AsyncSession, subscriptions: list[Subscription]
) -> dict[uuid.UUID, RenewalPrice]:
    """`renewal_amount` for a batch: the subscriptions no discount can touch (`may_discount`)
    cost their plan's full price, the rest are asked one by one."""
    discountable = await may_discount(session=session, subscriptions=subscriptions)
    prices: dict[uuid.UUID, RenewalPrice] = {}
    for subscription in subscriptions:
        if subscription.id in discountable:
            prices[subscription.id] = await renewal_amount(
                session=session, subscription=subscription
            )
            continue
        plan = await session.get(Plan, subscription.plan_id)
        price, _ = pricing.best(plan.price_amount, plan.currency, [None])
        prices[subscription.id] = RenewalPrice(
            amount=price.net,
            currency=plan.currency,
            description=f"{plan.name} ({plan.period_count} {plan.period_unit}), renewal",
            gross_amount=price.gross,
            discount_amount=price.discount,
        )
    return prices
