"""The one clock: off in production (404), forward only on a test stack, read by every decision
(access, the worker's expiry) of every process of the stack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from billing.clock import CLOCK, OFFSET_KEY, note_worker_pass
from billing.main import create_app
from billing.worker.jobs import run_once
from conftest import REDIS_PREFIX, as_service, as_user, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLOCK_PREFIX = f"{REDIS_PREFIX}clock_test:"


@pytest_asyncio.fixture(loop_scope="session")
async def clock_app(database_url, fake_pay_api):
    """A second API on the same database with the test clock on (its own Redis prefix)."""
    settings = make_settings(
        database_url, fake_pay_api.url, BILLING_TEST_CLOCK=1, BILLING_REDIS_PREFIX=CLOCK_PREFIX
    )
    app = create_app(settings, configure_logs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        yield app, client
    resources = app.state.resources
    async for key in resources.redis.scan_iter(match=f"{CLOCK_PREFIX}*"):
        await resources.redis.delete(key)
    CLOCK.reset_for_tests()  # the other tests run on the system time
    await resources.aclose()


async def test_the_clock_is_not_there_when_the_setting_is_off(client):
    for method, path, body in (
        ("GET", "/internal/v1/clock", None),
        ("POST", "/internal/v1/clock/advance", {"seconds": 3600}),
    ):
        response = await client.request(method, path, json=body, headers=as_service("tests"))
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "clock_not_found"
    assert CLOCK.offset_seconds == 0


async def test_a_user_token_cannot_move_the_clock(clock_app):
    _, client = clock_app
    response = await client.post(
        "/internal/v1/clock/advance", json={"seconds": 60}, headers=as_user(uuid.uuid4())
    )
    assert response.status_code == 401
    assert CLOCK.offset_seconds == 0


async def test_the_clock_moves_forward_only(clock_app):
    app, client = clock_app
    headers = as_service("tests")
    before = datetime.now(UTC)
    moved = await client.post(
        "/internal/v1/clock/advance", json={"seconds": 86400}, headers=headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["offset_seconds"] == 86400
    now = datetime.fromisoformat(moved.json()["now"])
    assert timedelta(days=1) <= now - before < timedelta(days=1, minutes=1)

    target = now + timedelta(days=2)
    to = await client.post(
        "/internal/v1/clock/advance", json={"to": target.isoformat()}, headers=headers
    )
    assert to.status_code == 200, to.text
    assert datetime.fromisoformat(to.json()["now"]) >= target

    for body in ({"seconds": -60}, {"seconds": 0}, {"to": datetime.now(UTC).isoformat()}):
        back = await client.post("/internal/v1/clock/advance", json=body, headers=headers)
        assert back.status_code == 404, back.text
        assert back.json()["code"] == "clock_backwards"
    for body in ({}, {"seconds": 5, "to": target.isoformat()}, {"to": "2030-01-01T00:00:00"}):
        bad = await client.post("/internal/v1/clock/advance", json=body, headers=headers)
        assert bad.status_code == 422, bad.text
    stored = await app.state.resources.redis.get(CLOCK_PREFIX + OFFSET_KEY)
    assert float(stored) == pytest.approx(CLOCK.offset_seconds)
    assert CLOCK.offset_seconds > 3 * 86400 - 60


async def test_another_process_of_the_stack_reads_the_moved_clock(clock_app):
    app, client = clock_app
    # Another copy wrote the offset (the API reads it before each request).
    await app.state.resources.redis.incrbyfloat(CLOCK_PREFIX + OFFSET_KEY, 7200)
    answer = await client.get("/internal/v1/clock", headers=as_service("tests"))
    assert answer.json()["offset_seconds"] == 7200


async def test_access_and_the_worker_follow_the_moved_clock(clock_app, billing):
    app, client = clock_app
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)], period_unit="day", period_count=30)
    user = uuid.uuid4()
    purchase = await billing.paid_subscription(user, plan_id)
    subscription_id = uuid.UUID(purchase["subscription"]["id"])
    first_end = await billing.scalar(
        "SELECT current_period_end FROM subscriptions WHERE id = :s", s=subscription_id
    )

    async def access() -> dict:
        response = await client.get(f"/api/v1/access/films/{film}", headers=as_user(user))
        assert response.status_code == 200, response.text
        return response.json()

    async def advance(seconds: float) -> None:
        moved = await client.post(
            "/internal/v1/clock/advance", json={"seconds": seconds}, headers=as_service("tests")
        )
        assert moved.status_code == 200, moved.text

    assert (await access())["allowed"] is True
    await advance(29 * 86400)
    assert (await access())["allowed"] is True  # day 29 of 30
    await advance(2 * 86400)
    # The period is over and no worker ran yet: the cached "allowed" was dropped.
    assert (await access())["reason"] == "no_subscription"

    # A worker pass without an explicit time reads the stack's clock: it renews the subscription
    # from the old end (the fake gateway charges the saved card).
    await run_once(app.state.resources)
    row = await billing.scalar(
        "SELECT row(status, current_period_start)::text FROM subscriptions WHERE id = :s",
        s=subscription_id,
    )
    assert row.startswith("(active,")
    start = await billing.scalar(
        "SELECT current_period_start FROM subscriptions WHERE id = :s", s=subscription_id
    )
    assert start == first_end
    allowed = await access()
    assert allowed["allowed"] is True and allowed["reason"] == "subscription"


async def test_the_clock_says_until_when_the_workers_have_caught_up(clock_app):
    app, client = clock_app
    resources = app.state.resources

    async def caught_up() -> datetime | None:
        answer = await client.get("/internal/v1/clock", headers=as_service("tests"))
        assert answer.status_code == 200, answer.text
        value = answer.json()["workers_caught_up_to"]
        return None if value is None else datetime.fromisoformat(value)

    assert await caught_up() is None  # no pass yet
    moved = await client.post(
        "/internal/v1/clock/advance", json={"seconds": 3 * 86400}, headers=as_service("tests")
    )
    moved_to = datetime.fromisoformat(moved.json()["now"])
    assert moved.json()["workers_caught_up_to"] is None
    await run_once(resources)  # a pass of the stack's time: it began after the move
    after_pass = await caught_up()
    assert after_pass is not None and after_pass >= moved_to
    # Another worker finishing a pass it began earlier does not move it back.
    await note_worker_pass(
        resources.redis, CLOCK_PREFIX, worker="another:1", began=moved_to - timedelta(days=1)
    )
    assert await caught_up() == after_pass
