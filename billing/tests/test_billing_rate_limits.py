"""Purchase, refund and cancel are rate-limited per user and per client address (`limits` in
Redis): past a limit, 429 `rate_limited` with Retry-After and nothing is done. Also: production
may hide the API docs (BILLING_DOCS=0)."""

from __future__ import annotations

import uuid

import httpx
import pytest
import pytest_asyncio
from billing.main import create_app
from conftest import as_user, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def limited(database_url, fake_pay_api):
    app = create_app(
        make_settings(
            database_url,
            fake_pay_api.url,
            BILLING_RATE_LIMIT_PER_USER="3/minute",
            BILLING_RATE_LIMIT_PER_ADDRESS="5/minute",
            BILLING_REDIS_PREFIX=f"billing_limits_{uuid.uuid4().hex[:8]}:",
        ),
        configure_logs=False,
    )
    clients = []

    def client_from(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://billing.test")
        clients.append(client)
        return client

    yield client_from
    for client in clients:
        await client.aclose()
    await app.state.resources.aclose()


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


async def test_purchases_are_limited_per_user_then_per_address(billing, limited):
    plan_id = await billing.put_plan()
    client = limited("203.0.113.10")
    user = uuid.uuid4()
    before = await billing.count("payments")
    answers = [
        await client.post(
            "/api/v1/subscriptions", json={"plan_id": str(plan_id)}, headers=as_user(user)
        )
        for _ in range(4)
    ]
    assert [a.status_code for a in answers[:3]] == [201, 200, 200]  # one open payment
    assert_limited(answers[3])
    assert answers[3].json()["details"] == {
        "action": "purchase",
        "per": "user",
        "limit": "3 per 1 minute",
    }
    assert await billing.count("payments") == before + 1
    # Two more users from that address: the address's fifth and sixth purchase.
    second = await client.post(
        "/api/v1/subscriptions", json={"plan_id": str(plan_id)}, headers=as_user(uuid.uuid4())
    )
    assert second.status_code == 201
    third = await client.post(
        "/api/v1/subscriptions", json={"plan_id": str(plan_id)}, headers=as_user(uuid.uuid4())
    )
    assert_limited(third)
    assert third.json()["details"]["per"] == "address"
    # The same user from elsewhere is still over the user's limit; others elsewhere are not.
    elsewhere = limited("198.51.100.20")
    assert_limited(
        await elsewhere.post(
            "/api/v1/subscriptions", json={"plan_id": str(plan_id)}, headers=as_user(user)
        )
    )
    fresh = await elsewhere.post(
        "/api/v1/subscriptions", json={"plan_id": str(plan_id)}, headers=as_user(uuid.uuid4())
    )
    assert fresh.status_code == 201


async def test_refunds_and_cancels_have_limits_of_their_own(billing, limited):
    user = uuid.uuid4()
    purchase = await billing.paid_subscription(user, await billing.put_plan())
    client = limited("203.0.113.11")
    refund_url = f"/api/v1/payments/{purchase['payment']['id']}/refund"
    refunds = [
        await client.post(refund_url, json={}, headers={**as_user(user), "Idempotency-Key": "k"})
        for _ in range(4)
    ]
    assert {r.status_code for r in refunds[:3]} <= {200, 201, 409}
    assert_limited(refunds[3])
    cancel_url = f"/api/v1/subscriptions/{purchase['subscription']['id']}/cancel"
    cancels = [await client.post(cancel_url, headers=as_user(user)) for _ in range(4)]
    assert all(c.status_code != 429 for c in cancels[:3])
    assert_limited(cancels[3])
    # Reads are not limited.
    for _ in range(10):
        assert (await client.get("/api/v1/payments", headers=as_user(user))).status_code == 200


async def test_production_may_hide_the_docs(database_url, fake_pay_api, client):
    hidden = create_app(
        make_settings(database_url, fake_pay_api.url, BILLING_DOCS=False), configure_logs=False
    )
    transport = httpx.ASGITransport(app=hidden)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await c.get(path)).status_code == 404
    await hidden.state.resources.aclose()
    assert (await client.get("/openapi.json")).status_code == 200  # the default (development)
