"""The signed, expiring links of renewal emails (contract: docs/contracts.md, "Emailed links").

A JWT (HS256, SERVICE_JWT_SECRET, `aud = "pay_api:link"`) naming the payment and what the page may
do with it. Its `exp` is on wall time, since pay_api checks it with its own clock."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt

from billing.clock import wall_now
from billing.config import Settings

LINK_AUDIENCE = "pay_api:link"


def link_url(settings: Settings, *, payment_id: uuid.UUID, use: str) -> str:
    """`use`: `authenticate` (finish 3-D Secure) or `card` (give another card and pay)."""
    issued = wall_now()
    token = jwt.encode(
        {
            "iss": "billing",
            "aud": LINK_AUDIENCE,
            "sub": str(payment_id),
            "use": use,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(seconds=settings.link_ttl_seconds)).timestamp()),
        },
        settings.service_jwt_secret,
        algorithm="HS256",
    )
    return f"{settings.payment_url_for(str(payment_id))}/{use}?t={token}"
