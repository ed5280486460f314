"""Tiny helpers that read settings from the environment (no third-party settings library)."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """The variable's value, the default when unset, or ImproperlyConfigured when required."""
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; empty items are dropped."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


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
    """Django's DATABASES entry for postgresql://user:password@host:port/name?option=value."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"Only PostgreSQL database URLs are supported, got {scheme!r}.")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("The database URL names no database.")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # sslmode, connect_timeout, ... are passed to libpq unchanged.
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
