"""The signed, expiring links of renewal emails (contract: docs/contracts.md, "Emailed links").

A JWT (HS256, SERVICE_JWT_SECRET, `aud = "pay_api:link"`) naming the payment and what the page may
do with it. Its `exp` is on wall time, since pay_api checks it with its own clock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import jwt

from billing.clock import wall_now
from billing.config import Settings

LINK_AUDIENCE = "pay_api:link"


def link_url(settings: Settings, *, payment_id: uuid.UUID, use: str) -> str:
    """`use`: `authenticate` (finish 3-D Secure) or `card` (give another card and pay)."""
    token = _token(settings, subject=payment_id, use=use)
    return f"{settings.payment_url_for(str(payment_id))}/{use}?t={token}"


def card_update_url(settings: Settings, *, user_id: uuid.UUID) -> tuple[str, datetime]:
    """The page where a user saves another card for the next renewals; (url, expires_at)."""
    token = _token(settings, subject=user_id, use="card_update")
    expires_at = wall_now() + timedelta(seconds=settings.link_ttl_seconds)
    return f"{settings.pay_api_public_url.rstrip('/')}/cards/{user_id}?t={token}", expires_at


def _token(settings: Settings, *, subject: uuid.UUID, use: str) -> str:
    issued = wall_now()
    return jwt.encode(
        {
            "iss": "billing",
            "aud": LINK_AUDIENCE,
            "sub": str(subject),
            "use": use,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(seconds=settings.link_ttl_seconds)).timestamp()),
        },
        settings.service_jwt_secret,
        algorithm="HS256",
    )
