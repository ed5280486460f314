"""Settings of pay_api, read from the environment (names per docs/contracts.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_PUBLISHABLE_KEY = "pk_test_offline"
REAL_STRIPE_JS_URL = "https://js.stripe.com/v3/"


class Settings(BaseSettings):
    """One object with every setting; pay_api refuses to start when a secret is missing."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # PostgreSQL owned by pay_api (psycopg 3 driver).
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/cinema_pay_api",
        validation_alias="PAY_API_DATABASE_URL",
    )
    # Secrets: no defaults, so a missing one stops the service at start-up.
    stripe_secret_key: str = Field(validation_alias="STRIPE_SECRET_KEY", min_length=1)
    stripe_webhook_secret: str = Field(validation_alias="STRIPE_WEBHOOK_SECRET", min_length=1)
    service_jwt_secret: str = Field(validation_alias="SERVICE_JWT_SECRET", min_length=1)
    # Not a secret (it is sent to browsers); the offline default only works with localstripe.
    stripe_publishable_key: str = Field(
        OFFLINE_PUBLISHABLE_KEY, validation_alias="STRIPE_PUBLISHABLE_KEY"
    )
    # Empty = real Stripe (https://api.stripe.com); offline it is localstripe.
    stripe_api_base: str = Field("http://127.0.0.1:8420", validation_alias="STRIPE_API_BASE")
    # Is STRIPE_API_BASE localstripe (LocalstripeDifferences apply)? Unset: yes whenever a base is
    # set (today's offline stack); 0: a base that answers as Stripe does (bench/fake_stripe.py).
    stripe_localstripe: bool | None = Field(None, validation_alias="STRIPE_LOCALSTRIPE")
    # Empty = Stripe's own Stripe.js; offline it is localstripe's mock.
    stripe_js_url: str = Field(
        "http://127.0.0.1:8420/js.stripe.com/v3/", validation_alias="STRIPE_JS_URL"
    )
    # Register our webhook endpoint with localstripe at start-up (ignored with real Stripe).
    stripe_register_webhook: bool = Field(True, validation_alias="STRIPE_REGISTER_WEBHOOK")
    # Where localstripe delivers events; empty = {PAY_API_PUBLIC_URL}/webhooks/stripe (in
    # containers the public address is not the one localstripe can reach).
    stripe_webhook_url: str = Field("", validation_alias="STRIPE_WEBHOOK_URL")
    # Seconds to wait for one Stripe answer, and how often the SDK retries network errors/5xx
    # (always with an Idempotency-Key).
    stripe_timeout_seconds: float = Field(20.0, validation_alias="PAY_API_STRIPE_TIMEOUT")
    stripe_max_network_retries: int = Field(2, validation_alias="PAY_API_STRIPE_MAX_RETRIES")
    # Stripe requests a process sends side by side for a batch of renewals (payments/renewals.py).
    stripe_concurrency: int = Field(16, validation_alias="PAY_API_STRIPE_CONCURRENCY", gt=0, le=64)

    billing_url: str = Field("http://127.0.0.1:8001", validation_alias="BILLING_URL")
    # Base of the links we hand out (payment_url) and of our webhook URL.
    public_url: str = Field("http://127.0.0.1:8002", validation_alias="PAY_API_PUBLIC_URL")

    # Outbox delivery to billing: timeout of one attempt, and back-off bounds.
    outbox_timeout_seconds: float = Field(3.0, validation_alias="PAY_API_OUTBOX_TIMEOUT")
    outbox_backoff_max_seconds: float = Field(300.0, validation_alias="PAY_API_OUTBOX_BACKOFF_MAX")
    # Notifications per POST to billing's batch endpoint (billing takes 1-100), and the most bytes
    # one POST's body may hold (keep it under billing's BILLING_MAX_BODY_BYTES, 64 KiB).
    outbox_batch_size: int = Field(100, validation_alias="PAY_API_OUTBOX_BATCH", ge=1, le=100)
    outbox_batch_max_bytes: int = Field(
        60000, validation_alias="PAY_API_OUTBOX_BATCH_BYTES", ge=4096
    )
    # Try to deliver a notification right after the commit that wrote it (the worker does the rest).
    outbox_deliver_immediately: bool = Field(True, validation_alias="PAY_API_OUTBOX_IMMEDIATE")
    # How long the event of a renewal answered in a batch waits before its first delivery: billing
    # applies the answer itself, so the event is only the safety net for an answer it lost (0:
    # delivered at once like the others).
    outbox_answered_delay_seconds: float = Field(
        30.0, validation_alias="PAY_API_OUTBOX_ANSWERED_DELAY", ge=0, le=3600
    )
    # Idle pause of `python -m pay_api.worker` between two empty polls.
    worker_poll_seconds: float = Field(1.0, validation_alias="PAY_API_WORKER_POLL")
    # How long the worker keeps rows that only guard against repeats (see pay_api.pruning):
    # Stripe event ids at least 30 days (Stripe retries a webhook for 3), delivered outbox rows.
    keep_stripe_events_days: int = Field(
        35, validation_alias="PAY_API_KEEP_STRIPE_EVENTS_DAYS", ge=30
    )
    keep_delivered_outbox_days: int = Field(
        7, validation_alias="PAY_API_KEEP_DELIVERED_OUTBOX_DAYS", ge=1
    )

    log_level: str = Field("INFO", validation_alias="PAY_API_LOG_LEVEL")

    # Largest request body (bytes), 413 payload_too_large past it: the API and the page's calls,
    # and Stripe's webhooks (an event carries whole objects: more room).
    max_body_bytes: int = Field(16384, validation_alias="PAY_API_MAX_BODY_BYTES", gt=0)
    webhook_max_body_bytes: int = Field(
        1048576, validation_alias="PAY_API_WEBHOOK_MAX_BODY_BYTES", gt=0
    )
    # billing's batch of renewal charges: up to 100 payments, each up to ~3.3 KB of fields.
    batch_max_body_bytes: int = Field(524288, validation_alias="PAY_API_BATCH_MAX_BODY_BYTES", gt=0)
    # Redis, for the rate limits' counters (ratelimit.py), shared by every pay_api copy.
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # Rate limits of the payment page and its calls, in the `limits` notation ("30/minute"):
    # per client address and per payment, counted apart.
    rate_limits: bool = Field(True, validation_alias="PAY_API_RATE_LIMITS")
    rate_limit_per_address: str = Field(
        "120/minute", validation_alias="PAY_API_RATE_LIMIT_PER_ADDRESS"
    )
    rate_limit_per_payment: str = Field(
        "30/minute", validation_alias="PAY_API_RATE_LIMIT_PER_PAYMENT"
    )
    rate_limit_prefix: str = Field("pay_api", validation_alias="PAY_API_RATE_LIMIT_PREFIX")
    # Proxies in front of pay_api whose X-Forwarded-For/-Proto to trust (docker-compose: nginx,
    # 1); 0 = none, the connection's address is the client's.
    proxy_count: int = Field(0, validation_alias="PAY_API_PROXY_COUNT", ge=0, le=5)
    # SetupIntents one payment may make (an untouched one is handed out again first).
    setup_intents_per_payment: int = Field(10, validation_alias="PAY_API_SETUP_INTENTS_MAX", gt=0)
    # Port of the outbox worker's Prometheus endpoint (/metrics on every path); 0 = none.
    worker_metrics_port: int = Field(0, validation_alias="PAY_API_WORKER_METRICS_PORT", ge=0)

    @property
    def uses_localstripe(self) -> bool:
        if self.stripe_localstripe is not None:
            return self.stripe_localstripe and bool(self.stripe_api_base)
        return bool(self.stripe_api_base)

    @property
    def webhook_endpoint(self) -> str:
        return self.stripe_webhook_url or f"{self.public_url.rstrip('/')}/webhooks/stripe"

    @property
    def stripe_js(self) -> str:
        return self.stripe_js_url or REAL_STRIPE_JS_URL

    @model_validator(mode="after")
    def _real_stripe_needs_real_keys(self) -> Settings:
        if not self.uses_localstripe and self.stripe_publishable_key == OFFLINE_PUBLISHABLE_KEY:
            raise ValueError("STRIPE_PUBLISHABLE_KEY must be set when STRIPE_API_BASE is empty")
        return self


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()  # type: ignore[call-arg]
