"""The payment page's calls are rate-limited in Redis (Flask-Limiter): per client address and
per payment, 429 `rate_limited` with Retry-After past either; the webhook and billing's API are
not limited."""

import uuid

import pytest

from pay_api import create_app

from .conftest import make_settings


@pytest.fixture
def limited(database_url, localstripe, billing):
    """An app with small limits and a fresh key prefix (counters of its own in Redis)."""
    settings = make_settings(
        database_url,
        localstripe,
        billing.url,
        PAY_API_RATE_LIMIT_PER_ADDRESS="8/minute",
        PAY_API_RATE_LIMIT_PER_PAYMENT="5/minute",
        PAY_API_RATE_LIMIT_PREFIX=f"pay_api_limits_{uuid.uuid4().hex[:8]}",
    )
    app = create_app(settings)
    yield app
    app.extensions["pay_api.db"].dispose()


def assert_limited(response) -> None:
    assert response.status_code == 429, response.data[:200]
    assert response.json["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_a_flood_on_one_payment_is_stopped_and_makes_one_setup_intent(limited, api):
    client = limited.test_client()
    payment_id = api.create_payment()["payment_id"]
    answers = [client.post(f"/pay/{payment_id}/setup-intent") for _ in range(20)]
    assert [a.status_code for a in answers[:5]] == [200] * 5
    for answer in answers[5:]:
        assert_limited(answer)
    assert len({a.json["client_secret"] for a in answers[:5]}) == 1  # one SetupIntent, reused
    # Another payment from another address is not affected.
    other = api.create_payment()["payment_id"]
    status = client.get(f"/pay/{other}/status", environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert status.status_code == 200


def test_one_address_is_limited_across_payments(limited, api):
    client = limited.test_client()
    payments = [api.create_payment()["payment_id"] for _ in range(3)]
    address = {"REMOTE_ADDR": "203.0.113.50"}
    codes = [
        client.get(f"/pay/{payments[i % 3]}/status", environ_base=address).status_code
        for i in range(12)
    ]
    assert codes[:8] == [200] * 8
    assert set(codes[8:]) == {429}
    assert_limited(client.get(f"/pay/{payments[0]}/status", environ_base=address))
    # Stripe's webhooks and billing's API from that address are not the page: not limited.
    assert client.post("/webhooks/stripe", data=b"{}", environ_base=address).status_code == 400


def test_behind_the_proxy_each_client_address_counts_apart(database_url, localstripe, billing, api):
    settings = make_settings(
        database_url,
        localstripe,
        billing.url,
        PAY_API_RATE_LIMIT_PER_ADDRESS="3/minute",
        PAY_API_PROXY_COUNT=1,
        PAY_API_RATE_LIMIT_PREFIX=f"pay_api_limits_{uuid.uuid4().hex[:8]}",
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        payment_id = api.create_payment()["payment_id"]

        def status(client_address: str) -> int:
            return client.get(
                f"/pay/{payment_id}/status", headers={"X-Forwarded-For": client_address}
            ).status_code

        assert [status("203.0.113.1") for _ in range(4)] == [200, 200, 200, 429]
        assert status("203.0.113.2") == 200  # another client behind the same proxy
    finally:
        app.extensions["pay_api.db"].dispose()
