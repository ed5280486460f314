"""What a discount does to plan prices, so a manager cannot save one that makes a price Stripe
cannot charge (above zero but below its minimum for the currency). The same arithmetic as
billing's (billing/src/billing/promotions/pricing.py), which checks again at every preview."""

from __future__ import annotations

from collections.abc import Iterable

from catalog.currencies import format_money, minimum_charge
from catalog.models import Plan


def net_price(gross: int, *, percent_off: int | None, amount_off: int | None) -> int:
    """The price after the discount: percentages round half up to the minor unit; never < 0."""
    if percent_off is not None:
        return gross - min(gross, (gross * percent_off + 50) // 100)
    return gross - min(gross, amount_off or 0)


def uncharged_prices(
    plans: Iterable[Plan], *, percent_off: int | None, amount_off: int | None, currency: str
) -> list[str]:
    """One message per plan whose price after the discount cannot be charged."""
    problems = []
    for plan in plans:
        if amount_off is not None and plan.currency != currency:
            continue  # an amount off applies only to plans in its currency
        net = net_price(plan.price_amount, percent_off=percent_off, amount_off=amount_off)
        if 0 < net < minimum_charge(plan.currency):
            problems.append(
                f"{plan.name}: {format_money(plan.price_amount, plan.currency)} becomes "
                f"{format_money(net, plan.currency)}, below the smallest card charge in "
                f"{plan.currency.upper()} ({format_money(minimum_charge(plan.currency), plan.currency)})."
            )
    return problems
