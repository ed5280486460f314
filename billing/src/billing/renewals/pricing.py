"""What a renewal costs: the ONE function that says it (discounts hook in here)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billing.plans.models import Plan
from billing.subscriptions.models import Subscription


@dataclass(frozen=True)
class RenewalPrice:
    amount: int  # minor units
    currency: str
    description: str


async def renewal_amount(*, session: AsyncSession, subscription: Subscription) -> RenewalPrice:
    """The price of the subscription's next period: the plan's price when the renewal is written
    (a manager's price change applies from the next renewal on)."""
    plan = await session.get(Plan, subscription.plan_id)
    return RenewalPrice(
        amount=plan.price_amount,
        currency=plan.currency,
        description=f"{plan.name} ({plan.period_count} {plan.period_unit}), renewal",
    )
