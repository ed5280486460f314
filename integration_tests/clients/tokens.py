"""Tokens as the cinema's auth service (users) and our services (service tokens) mint them."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from .stack import StackSettings


def user_token(settings: StackSettings, user_id: str, ttl: int = 3600) -> str:
    """sub = the user, aud = AUTH_JWT_AUDIENCE; HS256 with AUTH_JWT_SECRET, or RS256 with
    AUTH_JWT_PRIVATE_KEY_FILE when AUTH_JWT_ALGORITHM=RS256."""
    now = int(time.time())
    claims = {"sub": user_id, "aud": settings["AUTH_JWT_AUDIENCE"], "iat": now, "exp": now + ttl}
    algorithm = settings.values.get("AUTH_JWT_ALGORITHM", "HS256")
    if algorithm == "RS256":
        key = Path(settings["AUTH_JWT_PRIVATE_KEY_FILE"]).read_text()
    else:
        key = settings["AUTH_JWT_SECRET"]
    return jwt.encode(claims, key, algorithm=algorithm)


def service_token(
    settings: StackSettings, issuer: str, audience: str = "billing", ttl: int = 300
) -> str:
    """iss = the calling service, aud = the called one; HS256 with SERVICE_JWT_SECRET."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": issuer, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings["SERVICE_JWT_SECRET"], algorithm="HS256")
