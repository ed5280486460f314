"""Formatting amounts in minor units for people."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency

# ISO 4217 currencies whose minor unit is not 1/100 (Stripe's list of zero-decimal ones, and
# the three-decimal ones).
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def minor_unit_exponent(currency: str) -> int:
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """`format_money(1299, "usd")` → "$12.99"; `format_money(500, "jpy")` → "¥500" (as people
    read them: CLDR's symbol and format, in the page's language, English)."""
    value = Decimal(amount).scaleb(-minor_unit_exponent(currency))
    return format_currency(value, currency.upper(), locale="en_US")
