"""Settings from the environment, read with django-environ (typed values, database URLs), under
two rules of ours: an empty variable counts as unset (env files write `NAME=`), and a required
one without a value, or a value that is not of its type, refuses to start."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """The variable's value, the default when unset, or ImproperlyConfigured when required."""
    value = env.str(name, default="")
    if value == "":
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    """Strict: 1/0, true/false, yes/no, on/off (django-environ would read a typo as False)."""
    if name not in env.ENVIRON:
        return default
    value = env.str(name)
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    if not env.str(name, default=""):
        return default
    try:
        return env.int(name)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {env.str(name)!r}.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; empty items are dropped."""
    if name not in env.ENVIRON:
        return default
    return [item.strip() for item in env.list(name) if item.strip()]


def parse_money_limits(value: str) -> dict[str, Decimal]:
    """ "usd:50,jpy:5000" → {"usd": Decimal("50"), "jpy": Decimal("5000")} (amounts in units)."""
    limits: dict[str, Decimal] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        currency, _, amount = item.partition(":")
        try:
            limits[currency.strip().lower()] = Decimal(amount.strip())
        except InvalidOperation as exc:
            raise ImproperlyConfigured(f"Not a currency:amount pair: {item!r}.") from exc
    return limits


def database_from_url(url: str) -> dict:
    """Django's DATABASES entry for postgresql://user:password@host:port/name?option=value
    (django-environ's parser; options such as sslmode go to libpq unchanged)."""
    config = environ.Env.db_url_config(url)
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured("Only PostgreSQL database URLs are supported.")
    if not config.get("NAME"):
        raise ImproperlyConfigured("The database URL names no database.")
    return config
