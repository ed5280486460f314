"""Tokens: user and service tokens, each refused where it does not belong; settings refuse to start."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from conftest import (
    AUDIENCE,
    as_service,
    as_user,
    bearer,
    service_token,
    user_token,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_health_needs_no_token_and_echoes_the_request_id(client):
    response = await client.get("/health", headers={"X-Request-ID": "req-abc-123"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"] == "req-abc-123"
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) == 32


async def test_openapi_documents_the_api(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/plans",
        "/api/v1/subscriptions",
        "/api/v1/payments/{payment_id}/refund",
        "/api/v1/access/films/{film_id}",
        "/internal/v1/access",
        "/internal/v1/payment-events",
        "/internal/v1/payments/{payment_id}/refunds",
    ):
        assert path in paths
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
        ({"Authorization": "Bearer not-a-jwt"}, "token_invalid"),
        (bearer(user_token(uuid.uuid4(), exp=int(time.time()) - 10)), "token_expired"),
        (
            bearer(user_token(uuid.uuid4(), secret="forged-secret-forged-secret-forged!")),
            "token_invalid",
        ),
        (bearer(user_token(uuid.uuid4(), aud="another-audience")), "token_invalid"),
        (bearer(user_token(uuid.uuid4(), exp=None)), "token_invalid"),
        (bearer(user_token("not-a-uuid")), "token_invalid"),
        (as_service("movies"), "token_invalid"),  # a service token is not a user token
    ],
)
async def test_user_endpoints_refuse_bad_tokens(client, headers, code):
    response = await client.get("/api/v1/plans", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == code
    # RFC 6750: the scheme to use, and whether the token itself was the problem
    expected = "Bearer" if code == "not_authenticated" else 'Bearer error="invalid_token"'
    assert response.headers["www-authenticate"] == expected


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_is_415_unsupported_media_type(client, content_type):
    body = '{"plan_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}'
    response = await client.post(
        "/api/v1/subscriptions",
        content=body,
        headers={**as_user(uuid.uuid4()), "Content-Type": content_type},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json()["message"]


async def test_user_endpoint_refuses_alg_none(client):
    token = jwt.encode(
        {"sub": str(uuid.uuid4()), "aud": AUDIENCE, "exp": time.time() + 60}, None, algorithm="none"
    )
    response = await client.get("/api/v1/plans", headers=bearer(token))
    assert response.json()["code"] == "token_invalid"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "not_authenticated"),
        (as_user(uuid.uuid4()), 401, "token_invalid"),  # a user token is not a service token
        (bearer(service_token("etl", audience="pay_api")), 401, "token_invalid"),
        (
            bearer(service_token("etl", secret="forged-forged-forged-forged-forged!")),
            401,
            "token_invalid",
        ),
        (bearer(service_token("etl", ttl=-10)), 401, "token_expired"),
        (as_service("movies"), 403, "forbidden"),  # valid, but movies may not edit the catalog
    ],
)
async def test_internal_endpoints_refuse_bad_tokens_and_write_nothing(
    billing, headers, status, code
):
    before = await billing.table_counts()
    film_id = uuid.uuid4()
    response = await billing.client.put(
        f"/internal/v1/films/{film_id}", json={"title": "X", "active": True}, headers=headers
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    assert await billing.table_counts() == before


async def test_each_internal_endpoint_takes_only_its_caller(billing):
    user, payment = uuid.uuid4(), uuid.uuid4()
    checks = [
        ("GET", f"/internal/v1/users/{user}/payments", "pay_api"),
        ("GET", f"/internal/v1/payments/{payment}", "etl"),
        ("POST", "/internal/v1/payment-events", "admin"),
        ("GET", f"/internal/v1/access?user_id={user}&film_id={payment}", "etl"),
    ]
    for method, path, wrong_caller in checks:
        response = await billing.client.request(
            method, path, headers=as_service(wrong_caller), json={}
        )
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), path


async def test_log_lines_use_the_shared_field_vocabulary(client, capsys):
    """One JSON object a line on stdout: timestamp, level, service, logger, event, request_id,
    and for a request http_status and duration_ms (docs/contracts.md, Logs)."""
    import json
    import logging

    from billing.log import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO")
    try:
        await client.get("/health", headers={"X-Request-ID": "vocab-1"})
    finally:
        root.handlers[:], root.level = handlers, level
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (access,) = [line for line in lines if line.get("logger") == "billing.access"]
    assert access["event"] == "request"
    assert (access["service"], access["level"], access["request_id"]) == (
        "billing",
        "INFO",
        "vocab-1",
    )
    assert (access["http_status"], access["path"]) == (200, "/health")
    assert access["duration_ms"] >= 0 and access["timestamp"].endswith("+00:00")
