"""Service tokens (HS256 JWT with SERVICE_JWT_SECRET): checking billing's, minting ours."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import jwt
from flask import current_app, request

from pay_api.errors import Forbidden, NotAuthenticated, TokenExpired, TokenInvalid

SERVICE_NAME = "pay_api"
ALGORITHM = "HS256"
MINTED_TOKEN_LIFETIME_SECONDS = 300


def verify_service_token(token: str, *, secret: str) -> dict[str, Any]:
    """The claims of a valid token addressed to pay_api; our 401 errors otherwise."""
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=SERVICE_NAME,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except jwt.PyJWTError as exc:  # bad signature, wrong audience, missing claim, garbage
        raise TokenInvalid() from exc


def require_service(*allowed_issuers: str) -> Callable:
    """Decorator: the caller must present a service token from one of `allowed_issuers`."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated()
            settings = current_app.extensions["pay_api.settings"]
            claims = verify_service_token(token.strip(), secret=settings.service_jwt_secret)
            if claims.get("iss") not in allowed_issuers:
                raise Forbidden()
            return view(*args, **kwargs)

        return wrapper

    return decorator


def mint_service_token(*, audience: str, secret: str) -> str:
    """A short-lived token from pay_api to another service (docs/contracts.md, the recipe)."""
    now = int(time.time())
    claims = {
        "iss": SERVICE_NAME,
        "sub": SERVICE_NAME,
        "aud": audience,
        "iat": now,
        "exp": now + MINTED_TOKEN_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
