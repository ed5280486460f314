"""Tokens as the cinema's auth service (users) and our services (service tokens) mint them."""

from __future__ import annotations

import time

import jwt

from .stack import StackSettings


def user_token(settings: StackSettings, user_id: str, ttl: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "aud": settings["AUTH_JWT_AUDIENCE"], "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings["AUTH_JWT_SECRET"], algorithm="HS256")


def service_token(
    settings: StackSettings, issuer: str, audience: str = "billing", ttl: int = 300
) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": issuer, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings["SERVICE_JWT_SECRET"], algorithm="HS256")
