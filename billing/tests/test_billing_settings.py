"""Settings refuse to start half-configured; RS256 user tokens are checked with the public key."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from billing.auth import TokenVerifier
from billing.config import Settings
from billing.errors import TokenExpired, TokenInvalid
from conftest import AUDIENCE, SERVICE_SECRET
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError


def test_settings_refuse_to_start_without_secrets(monkeypatch):
    for name in (
        "SERVICE_JWT_SECRET",
        "AUTH_JWT_SECRET",
        "AUTH_JWT_ALGORITHM",
        "AUTH_JWT_PUBLIC_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="SERVICE_JWT_SECRET"):
        Settings(AUTH_JWT_SECRET="x")
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
        Settings(SERVICE_JWT_SECRET="x")
    with pytest.raises(ValidationError, match="AUTH_JWT_PUBLIC_KEY_FILE"):
        Settings(SERVICE_JWT_SECRET="x", AUTH_JWT_ALGORITHM="RS256")
    with pytest.raises(ValidationError, match="AUTH_JWT_AUDIENCE"):
        Settings(SERVICE_JWT_SECRET="x", AUTH_JWT_SECRET="y", AUTH_JWT_AUDIENCE="billing")


def test_rs256_user_tokens_are_verified_with_the_public_key_only(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = tmp_path / "auth.pub"
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = Settings(
        SERVICE_JWT_SECRET=SERVICE_SECRET,
        AUTH_JWT_ALGORITHM="RS256",
        AUTH_JWT_PUBLIC_KEY_FILE=str(public_file),
    )
    verifier = TokenVerifier(settings)
    user_id = uuid.uuid4()
    claims = {"sub": str(user_id), "aud": AUDIENCE, "exp": int(time.time()) + 60}
    rs_token = jwt.encode(claims, key, algorithm="RS256")
    assert verifier.user_id(f"Bearer {rs_token}") == user_id
    # Pinned algorithm: an HS256 token (even "signed" with the public key's text) is refused.
    hs_token = jwt.encode(claims, "some-hs256-secret-some-hs256-secret", algorithm="HS256")
    with pytest.raises(TokenInvalid):
        verifier.user_id(f"Bearer {hs_token}")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="RS256")
    with pytest.raises(TokenExpired):
        verifier.user_id(f"Bearer {expired}")


@pytest.mark.parametrize(
    ("name", "too_short"),
    [
        ("BILLING_KEEP_IDEMPOTENCY_KEYS_HOURS", 23),
        ("BILLING_KEEP_PROCESSED_EVENTS_DAYS", 29),
        ("BILLING_KEEP_DELIVERED_OUTBOX_DAYS", 0),
    ],
)
def test_keeping_times_below_the_safe_minimum_are_refused(name, too_short):
    with pytest.raises(ValidationError, match=name):
        Settings(AUTH_JWT_SECRET="x", SERVICE_JWT_SECRET="x", **{name: too_short})
