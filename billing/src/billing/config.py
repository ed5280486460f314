"""Settings of the billing service, read from the environment (names in docs/contracts.md).

`Settings()` refuses to build when a secret is missing, so neither the API nor the worker starts
half-configured. Nothing reads the environment at import time: call `get_settings()`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasGenerator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


def _billing_variable(field_name: str) -> str:
    """Billing's own settings are read from BILLING_<FIELD NAME> (`reconcile_base_seconds`:
    BILLING_RECONCILE_BASE_SECONDS); a field with its own `validation_alias` is read from that
    (the shared settings, and the few whose variable reads better than the field's name)."""
    return f"BILLING_{field_name.upper()}"


class Settings(BaseSettings):
    # Built from the variables' names (`Settings(BILLING_PAYMENT_TTL_SECONDS=60)`, as the
    # environment spells them) or from the fields' names.
    model_config = SettingsConfigDict(
        extra="ignore",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=_billing_variable),
    )

    # --- shared settings (docs/contracts.md) ---
    # asyncpg URL of billing's own database.
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/cinema_billing"
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # User tokens: HS256 with the secret, or RS256 with the public key file; pinned to one.
    auth_jwt_algorithm: Literal["HS256", "RS256"] = Field(
        "HS256", validation_alias="AUTH_JWT_ALGORITHM"
    )
    auth_jwt_secret: str = Field("", validation_alias="AUTH_JWT_SECRET")
    auth_jwt_public_key_file: str = Field("", validation_alias="AUTH_JWT_PUBLIC_KEY_FILE")
    auth_jwt_audience: str = Field("cinema", validation_alias="AUTH_JWT_AUDIENCE")
    # Service tokens (HS256, aud = called service). Required: no default.
    service_jwt_secret: str = Field(validation_alias="SERVICE_JWT_SECRET", min_length=1)
    # Where billing calls pay_api, and the public base the payment page is served from.
    pay_api_url: str = Field("http://127.0.0.1:8002", validation_alias="PAY_API_URL")
    pay_api_public_url: str = Field("http://127.0.0.1:8002", validation_alias="PAY_API_PUBLIC_URL")

    # --- billing's own knobs ---
    # A first payment not paid within this many seconds is canceled at pay_api and expires.
    payment_ttl_seconds: PositiveInt = 1800
    # Reconciler back-off: first check after `base`, doubling per attempt, capped at `max`.
    reconcile_base_seconds: PositiveFloat = 30
    reconcile_max_seconds: PositiveFloat = 3600
    # How long one worker claims a row it is working on (a crashed worker's claim runs out).
    worker_claim_seconds: PositiveInt = 120
    # Pause between two passes of the worker loop, and rows taken per job and pass.
    worker_interval_seconds: PositiveFloat = 5
    worker_batch_size: PositiveInt = 100
    # How long the worker keeps rows that only guard against repeats (see billing.pruning).
    # Idempotency keys: at least a day, as Stripe keeps its own.
    keep_idempotency_keys_hours: int = Field(72, ge=24)
    # pay_api's event ids: at least 30 days, longer than any sender retries an event.
    keep_processed_events_days: int = Field(35, ge=30)
    # Delivered outbox rows (undelivered ones are never pruned).
    keep_delivered_outbox_days: int = Field(7, ge=1)
    # Access decisions are made from memory (billing.access.cache). At most this many users are
    # held per process (least recently checked first out): the bound of the cache's memory.
    access_cache_users: int = Field(100_000, ge=1)
    # Every held entry is read again from PostgreSQL at most this long after it was read, even if
    # its invalidation message was lost (the unconditional stale bound).
    access_cache_max_seconds: PositiveFloat = 60
    # Memory answers only while the process's own ping came back on the invalidation channel
    # within this many seconds; otherwise checks read PostgreSQL (the bound for lost messages).
    access_stale_seconds: PositiveFloat = 2
    # Connections each process uses to fill the access cache (plus one that listens).
    access_db_pool_size: PositiveInt = 2
    # Prefix of every Redis key billing writes (tests use their own).
    redis_prefix: str = "billing:"
    # Services (token `iss`) allowed on the internal access endpoints.
    access_check_services: str = "movies,admin"
    # Timeouts of calls to pay_api, seconds.
    pay_api_connect_timeout: float = 2
    pay_api_timeout: float = 10
    # The cinema's page the payment page links back to ("Back to the cinema"); `{payment_id}` is
    # replaced. Empty: the page shows no such link.
    payment_return_url: str = ""
    # Connection pools (the idempotency pool holds a connection while a keyed request runs).
    # Per process: billing runs several web processes (BILLING_WEB_WORKERS), so with the defaults two
    # of them hold at most 2 × (2 × (5 + 5) + 3) = 46 connections.
    db_pool_size: PositiveInt = 5
    db_max_overflow: NonNegativeInt = 5
    log_level: str = "INFO"
    # Serve the API's docs (/docs, /openapi.json)? On for development and tests; off in
    # production (docker-compose), where they would describe the internal endpoints to anyone.
    docs: bool = True
    # Rate limits of purchase, refund and cancel (ratelimit.py), each action counted apart, in
    # the `limits` notation ("10/minute", "100/hour"): per user, and per client address.
    rate_limits: bool = True
    rate_limit_per_user: str = "10/minute"
    rate_limit_per_address: str = "60/minute"
    # Largest request body (bytes): larger ones answer 413 payload_too_large (guard.py).
    max_body_bytes: PositiveInt = 65536
    # Test and demo stacks only, NEVER production: the clock may be moved forward through
    # POST /internal/v1/clock/advance (billing/clock.py). Off: that endpoint answers 404.
    movable_clock: bool = Field(False, validation_alias="BILLING_TEST_CLOCK")
    # Port of the worker's Prometheus endpoint (/metrics on every path); 0 = none.
    worker_metrics_port: NonNegativeInt = 0

    # --- renewals (billing/renewals) ---
    # The renewal is charged this long before the period ends.
    renewal_lead_seconds: NonNegativeFloat = 3600
    # Retries of a declined renewal, in days after the period's end (increasing, within grace).
    renewal_retry_days: str = "1,3,5"
    # Access kept after the period's end while the renewal is unpaid (reason "grace").
    renewal_grace_days: PositiveFloat = 7
    # Decline codes that are not retried until the user gives another card.
    renewal_hard_declines: str = (
        "lost_card,stolen_card,fraudulent,pickup_card,restricted_card,incorrect_number,"
        "invalid_number,invalid_account,expired_card,no_saved_card,do_not_honor,"
        "transaction_not_allowed,revocation_of_authorization"
    )
    # Stripe requests per second that renewal charges may cause, all workers together (0 = no
    # cap); a charge counts for the most it can send (billing/renewals/rate.py). Real Stripe
    # allows about 100 requests/s in live mode, for everything: keep this below.
    renewal_max_per_second: NonNegativeInt = 0
    # Renewals charged in one call to pay_api (a batch; under a rate cap at most a twelfth of
    # it: renewals/service.py `batch_size`), and the batches one worker has in flight at once
    # (each waits on pay_api and Stripe) — at most BILLING_DB_POOL_SIZE + BILLING_DB_MAX_OVERFLOW,
    # the connections they draw on.
    renewal_batch_size: int = Field(50, gt=0, le=100)
    renewal_concurrency: int = Field(2, gt=0, le=100)

    # --- emails (billing/notifications) ---
    # The SMTP relay; `make up` and the test stacks point it at the local mail server.
    relay_host: str = Field("127.0.0.1", validation_alias="BILLING_SMTP_HOST")
    relay_port: int = Field(8026, validation_alias="BILLING_SMTP_PORT", gt=0, lt=65536)
    relay_starttls: bool = Field(False, validation_alias="BILLING_SMTP_STARTTLS")
    relay_username: str = Field("", validation_alias="BILLING_SMTP_USERNAME")
    relay_password: str = Field("", validation_alias="BILLING_SMTP_PASSWORD")
    relay_timeout_seconds: float = Field(10, validation_alias="BILLING_SMTP_TIMEOUT", gt=0)
    sender_address: str = Field(
        "Cinema <billing@cinema.local>", validation_alias="BILLING_MAIL_FROM"
    )
    # A user's address; `{user_id}` is replaced (billing keeps no addresses: in production a
    # relay mailbox of the auth service that forwards by user id).
    recipient_template: str = Field(
        "{user_id}@users.cinema.local", validation_alias="BILLING_MAIL_TO"
    )
    # How long an emailed link (authenticate, new card) opens its page.
    link_ttl_seconds: int = Field(10 * 86400, gt=0)

    @model_validator(mode="after")
    def _user_token_key_present(self) -> Settings:
        if self.auth_jwt_algorithm == "HS256" and not self.auth_jwt_secret:
            raise ValueError("AUTH_JWT_SECRET is required when AUTH_JWT_ALGORITHM=HS256")
        if self.auth_jwt_algorithm == "RS256":
            if not self.auth_jwt_public_key_file:
                raise ValueError(
                    "AUTH_JWT_PUBLIC_KEY_FILE is required when AUTH_JWT_ALGORITHM=RS256"
                )
            if not Path(self.auth_jwt_public_key_file).is_file():
                raise ValueError(
                    f"AUTH_JWT_PUBLIC_KEY_FILE not found: {self.auth_jwt_public_key_file}"
                )
        retries = self.renewal_retry_offsets
        if any(d <= 0 for d in retries) or list(retries) != sorted(set(retries)):
            raise ValueError("BILLING_RENEWAL_RETRY_DAYS must be increasing positive days")
        if retries and retries[-1] >= self.renewal_grace_days:
            raise ValueError("BILLING_RENEWAL_RETRY_DAYS must end before the grace period does")
        if self.renewal_concurrency > self.db_pool_size + self.db_max_overflow:
            raise ValueError(
                "BILLING_RENEWAL_CONCURRENCY must not exceed BILLING_DB_POOL_SIZE + "
                "BILLING_DB_MAX_OVERFLOW (each charge in flight draws on that pool)"
            )
        if self.auth_jwt_audience == "billing":
            # Service tokens use aud=billing; a user token must never pass for one.
            raise ValueError("AUTH_JWT_AUDIENCE must differ from the service audience 'billing'")
        return self

    @property
    def renewal_retry_offsets(self) -> tuple[float, ...]:
        """Retries, in days after the period's end."""
        return tuple(float(d) for d in self.renewal_retry_days.split(",") if d.strip())

    @property
    def renewal_hard_decline_set(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.renewal_hard_declines.split(",") if c.strip())

    @property
    def access_check_service_set(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.access_check_services.split(",") if s.strip())

    def return_url_for(self, payment_id: str) -> str:
        """Where the payment page's "Back to the cinema" link goes ("" = no link)."""
        return self.payment_return_url.replace("{payment_id}", payment_id)

    def payment_url_for(self, payment_id: str) -> str:
        """The payment page of a payment (pay_api serves it; the payment id is unguessable)."""
        return f"{self.pay_api_public_url.rstrip('/')}/pay/{payment_id}"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()  # type: ignore[call-arg]
