"""Amounts for people: billing stores integer minor units; messages show them in major units."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency

# The largest amount any input may carry (minor units): far above any price, far below int8.
MAX_AMOUNT = 10**12

# Currencies whose minor unit is not a hundredth (zero- and three-decimal ISO 4217 codes).
MINOR_DIGITS = {
    **dict.fromkeys("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd jod kwd omr tnd".split(), 3),
}


@lru_cache(maxsize=4096)  # a plan's few prices, formatted once (CLDR's formatting is not cheap)
def for_people(amount: int, currency: str) -> str:
    """for_people(999, "usd") → "$9.99"; for_people(500, "jpy") → "¥500" (CLDR's symbol and
    format, in English)."""
    value = Decimal(amount).scaleb(-MINOR_DIGITS.get(currency.lower(), 2))
    return format_currency(value, currency.upper(), locale="en_US")
