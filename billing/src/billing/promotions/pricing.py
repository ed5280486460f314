"""Prices after a discount, as Stripe's coupons compute them. Pure: no I/O, no clock.

A discount is `percent_off` (1–100) or `amount_off` in one currency; it lasts `once` (the first
payment), `repeating` (`duration_periods` payments) or `forever` (every renewal). Percentages round
half up to the minor unit (Stripe rounds the discount to the nearest minor unit); an amount off
never takes the price below zero. A net of 0 is a free period (no charge at Stripe); a net above 0
but below Stripe's minimum charge for the currency cannot be charged and is refused before any
payment exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from billing.money import for_people

DURATIONS = ("once", "repeating", "forever")

# Stripe's minimum charge per currency, in minor units (docs.stripe.com/currencies, "Minimum and
# maximum charge amounts"). Currencies Stripe does not list use about USD 0.50: 50 minor units.
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
DEFAULT_MINIMUM_CHARGE = 50


def minimum_charge(currency: str) -> int:
    """The smallest amount Stripe charges in `currency` (minor units)."""
    return MINIMUM_CHARGE.get(currency.lower(), DEFAULT_MINIMUM_CHARGE)


def below_minimum(net: int, currency: str) -> bool:
    """Above zero but less than Stripe charges in this currency: a charge that cannot be made."""
    return 0 < net < minimum_charge(currency)


def minimum_message(net: int, currency: str) -> str:
    return (
        f"The price after the discount, {for_people(net, currency)}, is below the smallest "
        f"amount a card can be charged in {currency.upper()} "
        f"({for_people(minimum_charge(currency), currency)})."
    )


@dataclass(frozen=True)
class Terms:
    """A discount's terms (a coupon, in Stripe's words); copied onto a redemption when used."""

    percent_off: int | None = None
    amount_off: int | None = None
    currency: str | None = None  # the currency of amount_off
    duration: str = "once"
    duration_periods: int | None = None  # for `repeating`

    def applies_to_currency(self, currency: str) -> bool:
        """An amount off applies only to prices in its own currency (as on Stripe)."""
        return self.amount_off is None or (self.currency or "").lower() == currency.lower()

    def lasts_for(self, period_number: int) -> bool:
        """Whether it discounts the subscription's `period_number`-th payment (1 = the first)."""
        if self.duration == "forever":
            return True
        if self.duration == "repeating":
            return period_number <= (self.duration_periods or 0)
        return period_number == 1

    def off(self, gross: int) -> int:
        """The discount on a price of `gross` minor units (same currency)."""
        if self.percent_off is not None:
            return min(gross, (gross * self.percent_off + 50) // 100)
        return min(gross, self.amount_off or 0)


@dataclass(frozen=True)
class Price:
    """What one payment costs: `gross` (the plan's price) − `discount` = `net` (what is charged)."""

    gross: int
    discount: int
    net: int
    currency: str

    @property
    def free(self) -> bool:
        return self.net == 0

    @property
    def below_minimum(self) -> bool:
        return below_minimum(self.net, self.currency)


def full_price(gross: int, currency: str) -> Price:
    return Price(gross=gross, discount=0, net=gross, currency=currency)


def apply(gross: int, currency: str, terms: Terms | None) -> Price:
    """The price of `gross` after `terms` (None, or terms for another currency: no discount)."""
    if terms is None or not terms.applies_to_currency(currency):
        return full_price(gross, currency)
    discount = terms.off(gross)
    return Price(gross=gross, discount=discount, net=gross - discount, currency=currency)


def best(gross: int, currency: str, candidates: Iterable[Terms | None]) -> tuple[Price, int | None]:
    """The lowest price among the candidates (discounts do not stack) and the index of the one
    that gave it (None when none discounts anything). Ties go to the earlier candidate."""
    chosen, chosen_index = full_price(gross, currency), None
    for index, terms in enumerate(candidates):
        price = apply(gross, currency, terms)
        if price.net < chosen.net:
            chosen, chosen_index = price, index
    return chosen, chosen_index
