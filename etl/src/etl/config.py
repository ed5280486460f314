"""Settings of the etl worker, read from the environment once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """A setting is missing or malformed; the worker refuses to start."""


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    # Read-only access to the admin's database (postgresql://user:password@host:port/name).
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/cinema_admin"
    # billing's base URL; the worker calls its /internal/v1/ API.
    billing_url: str = "http://127.0.0.1:8001"
    # HS256 secret for service tokens (iss=etl, aud=billing). Required.
    service_jwt_secret: str = field(default="", repr=False)
    # Seconds between two passes of the loop.
    interval_seconds: float = 2.0
    # Watermarks and recently delivered rows, written atomically after each accepted batch.
    state_file: Path = Path("var/etl/state.json")
    # Rows read and pushed per batch; the watermark moves after each batch billing accepted.
    batch_size: int = 200
    # Rows are re-read this far behind the watermark, so a transaction that committed late with an
    # older updated_at is not skipped; rows already delivered are recognised and not sent again.
    lookback_seconds: float = 120.0
    # Per-request timeout towards billing.
    http_timeout_seconds: float = 10.0
    # Attempts per request when billing is down or answers 5xx, before the pass gives up.
    http_attempts: int = 4
    # Exponential back-off between attempts and between failed passes: base * 2**n, capped.
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # Lifetime of the service tokens the worker mints (contract: at most 5 minutes).
    token_ttl_seconds: int = 300
    # Port of the Prometheus endpoint (etl_lag_seconds, passes, rows); 0 = none.
    metrics_port: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        secret = os.environ.get("SERVICE_JWT_SECRET", "")
        if not secret:
            raise ConfigError("SERVICE_JWT_SECRET is required (service tokens for billing)")
        defaults = cls()
        return cls(
            admin_database_url=os.environ.get("ADMIN_DATABASE_URL") or defaults.admin_database_url,
            billing_url=(os.environ.get("BILLING_URL") or defaults.billing_url).rstrip("/"),
            service_jwt_secret=secret,
            interval_seconds=_float("ETL_INTERVAL_SECONDS", defaults.interval_seconds),
            state_file=Path(os.environ.get("ETL_STATE_FILE") or defaults.state_file),
            batch_size=_int("ETL_BATCH_SIZE", defaults.batch_size),
            lookback_seconds=_float("ETL_LOOKBACK_SECONDS", defaults.lookback_seconds),
            http_timeout_seconds=_float("ETL_HTTP_TIMEOUT_SECONDS", defaults.http_timeout_seconds),
            http_attempts=_int("ETL_HTTP_ATTEMPTS", defaults.http_attempts),
            backoff_base_seconds=_float("ETL_BACKOFF_BASE_SECONDS", defaults.backoff_base_seconds),
            backoff_max_seconds=_float("ETL_BACKOFF_MAX_SECONDS", defaults.backoff_max_seconds),
            metrics_port=_int("ETL_METRICS_PORT", defaults.metrics_port, minimum=0),
        )

    def backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures (1, 2, ...)."""
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(failures - 1, 0))
