"""Currencies a plan may be priced in: ISO 4217 code (lower case, as Stripe and billing use it),
name, and the number of minor-unit digits (2 for cents; 0 for yen, whose minor unit is the yen)."""

from __future__ import annotations

from decimal import Decimal

CURRENCIES: dict[str, tuple[str, int]] = {
    "usd": ("US dollar", 2),
    "eur": ("Euro", 2),
    "gbp": ("Pound sterling", 2),
    "chf": ("Swiss franc", 2),
    "cad": ("Canadian dollar", 2),
    "aud": ("Australian dollar", 2),
    "nzd": ("New Zealand dollar", 2),
    "sek": ("Swedish krona", 2),
    "nok": ("Norwegian krone", 2),
    "dkk": ("Danish krone", 2),
    "pln": ("Polish zloty", 2),
    "czk": ("Czech koruna", 2),
    "huf": ("Hungarian forint", 2),
    "rub": ("Russian ruble", 2),
    "kzt": ("Kazakhstani tenge", 2),
    "try": ("Turkish lira", 2),
    "inr": ("Indian rupee", 2),
    "brl": ("Brazilian real", 2),
    "mxn": ("Mexican peso", 2),
    "sgd": ("Singapore dollar", 2),
    "hkd": ("Hong Kong dollar", 2),
    "jpy": ("Japanese yen", 0),
    "krw": ("South Korean won", 0),
}

CURRENCY_CHOICES = [(code, f"{code.upper()} — {name}") for code, (name, _) in CURRENCIES.items()]


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point of the currency's major unit (2 when unknown)."""
    return CURRENCIES.get(currency.lower(), ("", 2))[1]


def to_major(amount_minor: int, currency: str) -> Decimal:
    """999 usd -> Decimal('9.99'); 500 jpy -> Decimal('500')."""
    digits = minor_unit_digits(currency)
    return Decimal(amount_minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def to_minor(amount_major: Decimal, currency: str) -> int:
    """Decimal('9.99') usd -> 999. Raises ValueError when the amount has too many decimals."""
    digits = minor_unit_digits(currency)
    scaled = amount_major.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{currency.upper()} amounts have at most {digits} decimal places")
    return int(scaled)


def format_money(amount_minor: int, currency: str) -> str:
    """999, "usd" -> "9.99 USD"."""
    return f"{to_major(amount_minor, currency):,} {currency.upper()}"


# Stripe's minimum charge per currency, in minor units (its "Minimum and maximum charge amounts"
# table; billing keeps the same table in billing/promotions/pricing.py). Currencies Stripe does
# not list there: about USD 0.50, taken as 50 minor units.
MINIMUM_CHARGE = {
    "usd": 50, "aud": 50, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250, "eur": 50,
    "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "nok": 300, "nzd": 50,
    "pln": 200, "sek": 300, "sgd": 50,
}  # fmt: skip


def minimum_charge(currency: str) -> int:
    """The smallest amount Stripe charges in `currency` (minor units)."""
    return MINIMUM_CHARGE.get(currency.lower(), 50)
