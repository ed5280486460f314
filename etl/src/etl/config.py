"""Settings of the etl worker, read from the environment once at start (pydantic-settings, as
billing and pay_api do): a missing secret or a malformed value refuses to start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the worker refuses to start."""


class Settings(BaseSettings):
    # Unset and empty variables alike take the default; fields may be given by name in code.
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_ignore_empty=True, populate_by_name=True
    )

    # Read-only access to the admin's database (postgresql://user:password@host:port/name).
    admin_database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/cinema_admin", validation_alias="ADMIN_DATABASE_URL"
    )
    # billing's base URL; the worker calls its /internal/v1/ API.
    billing_url: str = Field("http://127.0.0.1:8001", validation_alias="BILLING_URL")
    # HS256 secret for service tokens (iss=etl, aud=billing). Required.
    service_jwt_secret: str = Field(validation_alias="SERVICE_JWT_SECRET", min_length=1, repr=False)
    # Seconds between two passes of the loop.
    interval_seconds: float = Field(2.0, validation_alias="ETL_INTERVAL_SECONDS", ge=0)
    # Watermarks and recently delivered rows, written atomically after each accepted batch.
    state_file: Path = Field(Path("var/etl/state.json"), validation_alias="ETL_STATE_FILE")
    # Rows read and pushed per batch; the watermark moves after each batch billing accepted.
    batch_size: int = Field(200, validation_alias="ETL_BATCH_SIZE", ge=1)
    # Rows are re-read this far behind the watermark, so a transaction that committed late with an
    # older updated_at is not skipped; rows already delivered are recognised and not sent again.
    lookback_seconds: float = Field(120.0, validation_alias="ETL_LOOKBACK_SECONDS", ge=0)
    # Per-request timeout towards billing.
    http_timeout_seconds: float = Field(10.0, validation_alias="ETL_HTTP_TIMEOUT_SECONDS", ge=0)
    # Attempts per request when billing is down or answers 5xx, before the pass gives up.
    http_attempts: int = Field(4, validation_alias="ETL_HTTP_ATTEMPTS", ge=1)
    # Exponential back-off between attempts and between failed passes: base * 2**n, capped.
    backoff_base_seconds: float = Field(0.5, validation_alias="ETL_BACKOFF_BASE_SECONDS", ge=0)
    backoff_max_seconds: float = Field(30.0, validation_alias="ETL_BACKOFF_MAX_SECONDS", ge=0)
    # Lifetime of the service tokens the worker mints (contract: at most 5 minutes).
    token_ttl_seconds: int = Field(300, gt=0, le=300)
    # Port of the Prometheus endpoint (etl_lag_seconds, passes, rows); 0 = none.
    metrics_port: int = Field(0, validation_alias="ETL_METRICS_PORT", ge=0)

    @field_validator("billing_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the environment, or ConfigError naming what is wrong."""
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(problems) from exc

    def backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures (1, 2, ...)."""
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(failures - 1, 0))
