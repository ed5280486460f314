"""Formatting amounts in minor units for people."""

from __future__ import annotations

from decimal import Decimal

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
    """`format_money(1299, "usd")` → "12.99 USD"; `format_money(500, "jpy")` → "500 JPY"."""
    exponent = minor_unit_exponent(currency)
    value = Decimal(amount).scaleb(-exponent)
    return f"{value:,.{exponent}f} {currency.upper()}"
