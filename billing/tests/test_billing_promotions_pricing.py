"""The pure pricing function: percent and amount off, rounding, durations, minimum charges."""

from __future__ import annotations

import pytest
from billing.promotions import pricing
from billing.promotions.pricing import Terms


@pytest.mark.parametrize(
    ("gross", "terms", "discount", "net"),
    [
        (999, Terms(percent_off=20), 200, 799),  # 199.8 rounds half up to 200
        (999, Terms(percent_off=10), 100, 899),  # 99.9 -> 100
        (1005, Terms(percent_off=10), 101, 904),  # 100.5 -> 101 (half up)
        (1004, Terms(percent_off=10), 100, 904),  # 100.4 -> 100
        (999, Terms(percent_off=100), 999, 0),
        (999, Terms(amount_off=300, currency="usd"), 300, 699),
        (999, Terms(amount_off=5000, currency="usd"), 999, 0),  # never below zero
        (999, Terms(amount_off=300, currency="eur"), 0, 999),  # another currency: no discount
        (999, None, 0, 999),
    ],
)
def test_apply(gross, terms, discount, net):
    price = pricing.apply(gross, "usd", terms)
    assert (price.gross, price.discount, price.net, price.currency) == (gross, discount, net, "usd")
    assert price.gross - price.discount == price.net


def test_amount_off_currency_is_case_insensitive():
    assert pricing.apply(999, "usd", Terms(amount_off=100, currency="USD")).net == 899


@pytest.mark.parametrize(
    ("terms", "discounted_periods"),
    [
        (Terms(percent_off=10, duration="once"), {1}),
        (Terms(percent_off=10, duration="repeating", duration_periods=3), {1, 2, 3}),
        (Terms(percent_off=10, duration="forever"), set(range(1, 13))),
    ],
)
def test_durations(terms, discounted_periods):
    assert {n for n in range(1, 13) if terms.lasts_for(n)} == discounted_periods


def test_best_takes_the_lowest_price_and_does_not_stack():
    price, index = pricing.best(
        1000, "usd", [Terms(percent_off=10), None, Terms(amount_off=250, currency="usd")]
    )
    assert (price.net, index) == (750, 2)
    price, index = pricing.best(1000, "usd", [None, Terms(amount_off=1, currency="eur")])
    assert (price.net, index) == (1000, None)
    # A tie goes to the earlier candidate (the promo code is passed first).
    _, index = pricing.best(
        1000, "usd", [Terms(percent_off=10), Terms(amount_off=100, currency="usd")]
    )
    assert index == 0


@pytest.mark.parametrize(
    ("net", "currency", "refused"),
    [
        (0, "usd", False),  # free: nothing is charged
        (49, "usd", True),
        (50, "usd", False),
        (29, "gbp", True),
        (30, "gbp", False),
        (49, "jpy", True),
        (17499, "huf", True),
        (17500, "huf", False),
        (49, "xyz", True),  # not in Stripe's table: about USD 0.50
    ],
)
def test_minimum_charge(net, currency, refused):
    assert pricing.below_minimum(net, currency) is refused
    assert pricing.Price(gross=net, discount=0, net=net, currency=currency).below_minimum is refused


def test_minimum_message_names_both_amounts():
    message = pricing.minimum_message(10, "usd")
    assert "$0.10" in message and "$0.50" in message
