"""Bearer tokens: user tokens (the cinema's auth service) and service tokens (our services).

* User token: `sub` = user UUID, `aud` = AUTH_JWT_AUDIENCE, `exp` required; HS256 with
  AUTH_JWT_SECRET or RS256 with AUTH_JWT_PUBLIC_KEY_FILE, the algorithm pinned to the configured one.
* Service token: HS256 with SERVICE_JWT_SECRET, `aud` = "billing", `iss` = the calling service.

Different keys and audiences, so neither kind passes for the other. Verified user tokens are kept
in a small in-process map keyed by the whole token (signature included), and so are service tokens,
so the access check — called on every play — does not redo the HMAC and JSON work for a token it has
already verified; expiry is still checked on every request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Generic, TypeVar

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from billing.config import Settings
from billing.errors import Forbidden, NotAuthenticated, TokenExpired, TokenInvalid

SERVICE_AUDIENCE = "billing"
_VERIFIED_CACHE_SIZE = 10_000
T = TypeVar("T")

# Only for the OpenAPI document ("Authorize" button); verification is ours.
bearer_scheme = HTTPBearer(auto_error=False, description="User or service JWT")


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        raise NotAuthenticated()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated()
    return token.strip()


class _Verified(Generic[T]):
    """Tokens already verified, each with what it proved (a user id, a service) and its expiry:
    a token seen again costs a dict lookup, and its expiry is still checked every time. Bounded:
    full, it is emptied (tokens are short-lived; the next requests verify theirs again)."""

    def __init__(self) -> None:
        self._by_token: dict[str, tuple[T, float]] = {}

    def get(self, token: str) -> T | None:
        """What `token` proved, None if it was not verified yet, TokenExpired once it expired."""
        cached = self._by_token.get(token)
        if cached is None:
            return None
        proved, expires_at = cached
        if time.time() < expires_at:
            return proved
        raise TokenExpired()

    def keep(self, token: str, proved: T, claims: dict) -> T:
        if len(self._by_token) >= _VERIFIED_CACHE_SIZE:
            self._by_token.clear()
        self._by_token[token] = (proved, float(claims["exp"]))
        return proved


class TokenVerifier:
    """Checks both kinds of token with keys loaded once."""

    def __init__(self, settings: Settings) -> None:
        self._user_algorithm = settings.auth_jwt_algorithm
        if self._user_algorithm == "RS256":
            self._user_key: str = Path(settings.auth_jwt_public_key_file).read_text()
        else:
            self._user_key = settings.auth_jwt_secret
        self._user_audience = settings.auth_jwt_audience
        self._service_key = settings.service_jwt_secret
        self._verified_users: _Verified[uuid.UUID] = _Verified()
        self._verified_services: _Verified[str] = _Verified()

    def user_id(self, authorization: str | None) -> uuid.UUID:
        """The user id (`sub`) of a valid user token, or a 401 error."""
        token = bearer_token(authorization)
        user_id = self._verified_users.get(token)
        if user_id is not None:
            return user_id
        claims = self._decode(
            token, self._user_key, self._user_algorithm, self._user_audience, ["exp", "sub"]
        )
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise TokenInvalid("The token's subject is not a user id.") from None
        return self._verified_users.keep(token, user_id, claims)

    def service(self, authorization: str | None) -> str:
        """The calling service (`iss`) of a valid service token, or a 401 error."""
        token = bearer_token(authorization)
        issuer = self._verified_services.get(token)
        if issuer is not None:
            return issuer
        claims = self._decode(
            token, self._service_key, "HS256", SERVICE_AUDIENCE, ["exp", "iss", "aud"]
        )
        return self._verified_services.keep(token, str(claims["iss"]), claims)

    @staticmethod
    def _decode(token: str, key: str, algorithm: str, audience: str, required: list[str]) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise TokenInvalid() from None


def get_verifier(request: Request) -> TokenVerifier:
    return request.app.state.resources.verifier


def current_user(request: Request, _doc: object = Depends(bearer_scheme)) -> uuid.UUID:
    """Dependency: the user of a valid user token."""
    return get_verifier(request).user_id(request.headers.get("authorization"))


CurrentUser = Annotated[uuid.UUID, Depends(current_user)]


def require_service(*allowed: str) -> Callable[..., str]:
    """Dependency factory: a valid service token whose issuer is one of `allowed` (else 403)."""

    def dependency(request: Request, _doc: object = Depends(bearer_scheme)) -> str:
        issuer = get_verifier(request).service(request.headers.get("authorization"))
        if issuer not in allowed:
            raise Forbidden(f"Service {issuer!r} may not use this endpoint.")
        return issuer

    return dependency


def mint_service_token(secret: str, *, audience: str, ttl_seconds: int = 60) -> str:
    """A short-lived token billing presents to another service (docs/contracts.md, the recipe)."""
    now = int(time.time())
    claims = {
        "iss": "billing",
        "sub": "billing",
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
