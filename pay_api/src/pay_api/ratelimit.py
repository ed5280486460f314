"""Rate limits on the payment page and its calls (public: anyone holding a payment link),
with Flask-Limiter counting in Redis (`REDIS_URL`), shared by every pay_api copy.

Two limits on every route of the page's blueprint, counted apart: per client address and per
payment (the page has no user; its payment id is what a flood would aim at). Past either:
`429 rate_limited` with `Retry-After`. SetupIntents are also capped per payment (payments/
card_setups.py). If Redis does not answer the request goes through (logged): the limits protect
pay_api and Stripe, they must not stop payments with Redis.
"""

from __future__ import annotations

from flask import Blueprint, Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from pay_api.config import Settings


def _payment_of_the_page() -> str:
    return str((request.view_args or {}).get("raw_id", ""))[:100]


def init_app(app: Flask, settings: Settings, page: Blueprint) -> Limiter:
    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=settings.redis_url,
        strategy="moving-window",
        key_prefix=settings.rate_limit_prefix,
        headers_enabled=True,
        enabled=settings.rate_limits,
        swallow_errors=True,
    )
    limiter.init_app(app)
    limiter.limit(settings.rate_limit_per_address, key_func=get_remote_address)(page)
    limiter.limit(settings.rate_limit_per_payment, key_func=_payment_of_the_page, per_method=False)(
        page
    )
    return limiter
