import time
import uuid

import jwt
import pytest
from pay_api.config import Settings
from pay_api.gateway import Gateway
from pydantic import ValidationError

from .conftest import SERVICE_SECRET, auth, service_token

URL = "/internal/v1/payments/" + str(uuid.uuid4())


def test_missing_token_is_401_not_authenticated(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json == {"code": "not_authenticated", "message": response.json["message"]}
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_forged_token_is_401_token_invalid(client):
    response = client.get(URL, headers=auth(secret="not-the-secret-but-just-as-long-0123456789"))
    assert response.status_code == 401
    assert response.json["code"] == "token_invalid"


def test_token_for_another_audience_is_401_token_invalid(client):
    response = client.get(URL, headers=auth(aud="billing"))
    assert response.status_code == 401
    assert response.json["code"] == "token_invalid"


def test_user_token_is_not_a_service_token(client):
    user_token = jwt.encode(
        {"sub": str(uuid.uuid4()), "aud": "cinema", "exp": int(time.time()) + 60},
        SERVICE_SECRET,
        "HS256",
    )
    response = client.get(URL, headers={"Authorization": f"Bearer {user_token}"})
    assert response.status_code == 401
    assert response.json["code"] == "token_invalid"


def test_expired_token_is_401_token_expired(client):
    response = client.get(URL, headers=auth(ttl=-10))
    assert response.status_code == 401
    assert response.json["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_body_that_is_not_json_is_415_unsupported_media_type(client):
    response = client.post(
        "/internal/v1/payments",
        data='{"payment_id": "x"}',
        headers={"Authorization": f"Bearer {service_token()}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json["message"]


def test_other_service_is_403_forbidden(client):
    response = client.get(URL, headers=auth(iss="admin"))
    assert response.status_code == 403
    assert response.json["code"] == "forbidden"


def test_valid_token_reaches_the_endpoint(client):
    response = client.get(URL, headers={"Authorization": f"Bearer {service_token()}"})
    assert response.status_code == 404
    assert response.json["code"] == "payment_not_found"


def test_responses_carry_the_request_id(client):
    response = client.get("/health", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["X-Request-ID"] == "req-123"
    assert client.get("/health").headers["X-Request-ID"]


@pytest.mark.parametrize(
    "missing", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SERVICE_JWT_SECRET"]
)
def test_settings_refuse_to_start_without_a_secret(monkeypatch, missing):
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SERVICE_JWT_SECRET"):
        monkeypatch.setenv(name, "set")
    monkeypatch.delenv(missing)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    assert missing in str(error.value)


def test_real_stripe_needs_a_real_publishable_key(monkeypatch):
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SERVICE_JWT_SECRET"):
        monkeypatch.setenv(name, "set")
    monkeypatch.setenv("STRIPE_API_BASE", "")
    monkeypatch.delenv("STRIPE_PUBLISHABLE_KEY", raising=False)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_log_lines_use_the_shared_field_vocabulary(client, capsys):
    """One JSON object a line on stdout, in billing's vocabulary (docs/contracts.md, Logs)."""
    import json
    import logging

    from pay_api.logs import configure_logging

    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers[:] = []
    configure_logging("INFO")
    try:
        client.get("/health", headers={"X-Request-ID": "vocab-2"})
    finally:
        root.handlers[:] = handlers
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (access,) = [line for line in lines if line.get("logger") == "pay_api.access"]
    assert access["event"] == "request"
    assert (access["service"], access["level"], access["request_id"]) == (
        "pay_api",
        "INFO",
        "vocab-2",
    )
    assert (access["http_status"], access["path"]) == (200, "/health")
    assert access["duration_ms"] >= 0 and access["timestamp"].endswith("+00:00")


@pytest.mark.parametrize(
    ("base", "flag", "localstripe"),
    [
        ("http://127.0.0.1:8420", None, True),  # today's offline stack
        ("", None, False),  # real Stripe
        ("http://127.0.0.1:26430", "0", False),  # a base that answers as Stripe does (bench)
        ("http://127.0.0.1:8420", "1", True),
        ("", "1", False),  # no base: api.stripe.com, never localstripe
    ],
)
def test_a_stripe_api_base_is_localstripe_unless_told_otherwise(
    monkeypatch, base, flag, localstripe
):
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SERVICE_JWT_SECRET"):
        monkeypatch.setenv(name, "set")
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_real")
    monkeypatch.setenv("STRIPE_API_BASE", base)
    if flag is None:
        monkeypatch.delenv("STRIPE_LOCALSTRIPE", raising=False)
    else:
        monkeypatch.setenv("STRIPE_LOCALSTRIPE", flag)
    settings = Settings(_env_file=None)
    assert settings.uses_localstripe is localstripe
    assert Gateway(settings).differences.active is localstripe
