"""Buying a plan: POST /api/v1/subscriptions, registration with pay_api, idempotency, guards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from conftest import as_user
from sqlalchemy import text

from billing import clock

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_purchase_writes_subscription_and_payment_and_registers_it(billing):
    plan_id = await billing.put_plan(price_amount=1299, currency="eur", name="Cinema+")
    user = uuid.uuid4()
    response = await billing.buy(user, plan_id, **{"X-Request-ID": "buy-request-1"})
    assert response.status_code == 201, response.text
    body = response.json()
    subscription, payment = body["subscription"], body["payment"]
    assert subscription["status"] == "incomplete"
    assert subscription["plan_id"] == str(plan_id)
    assert subscription["current_period_end"] is None
    assert payment["status"] == "pending"
    assert (payment["amount"], payment["currency"], payment["refunded_amount"]) == (1299, "eur", 0)
    assert payment["payment_url"] == f"http://pay.public.test/pay/{payment['id']}"
    assert payment["subscription_id"] == subscription["id"]
    assert payment["refunds"] == []

    (call,) = [
        c
        for c in billing.fake.calls_to("POST", "/internal/v1/payments")
        if c.body["payment_id"] == payment["id"]
    ]
    assert call.claims["iss"] == "billing" and call.claims["aud"] == "pay_api"
    assert call.body["user_id"] == str(user)
    assert (call.body["amount"], call.body["currency"]) == (1299, "eur")
    assert call.request_id == "buy-request-1"

    # Asking again returns the open payment (200), does not create another.
    again = await billing.buy(user, plan_id)
    assert again.status_code == 200
    assert again.json()["payment"]["id"] == payment["id"]
    assert await billing.count("payments", "user_id = :u", u=user) == 1

    mine = (await billing.client.get("/api/v1/subscriptions", headers=as_user(user))).json()
    assert [s["id"] for s in mine["items"]] == [subscription["id"]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"plan_id": "not-a-uuid"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"plan_id": None}, 422, "validation_error"),
        ("plan", 422, "validation_error"),
    ],
)
async def test_malformed_purchases_are_refused_and_write_nothing(billing, body, status, code):
    before = await billing.table_counts()
    response = await billing.client.post(
        "/api/v1/subscriptions", json=body, headers=as_user(uuid.uuid4())
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert await billing.table_counts() == before


async def test_unknown_and_inactive_plans_are_refused_and_write_nothing(billing):
    inactive = await billing.put_plan(active=False)
    before = await billing.table_counts()
    user = uuid.uuid4()
    unknown = await billing.buy(user, uuid.uuid4(), **{"Idempotency-Key": "k-unknown"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")
    off_sale = await billing.buy(user, inactive, **{"Idempotency-Key": "k-inactive"})
    assert (off_sale.status_code, off_sale.json()["code"]) == (409, "plan_inactive")
    assert await billing.table_counts() == before


async def test_same_key_same_body_same_answer_other_body_refused(billing):
    plan_a, plan_b = await billing.put_plan(), await billing.put_plan()
    user = uuid.uuid4()
    first = await billing.buy(user, plan_a, **{"Idempotency-Key": "key-1"})
    second = await billing.buy(user, plan_a, **{"Idempotency-Key": "key-1"})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()

    before = await billing.table_counts()
    reused = await billing.buy(user, plan_b, **{"Idempotency-Key": "key-1"})
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    too_long = await billing.buy(user, plan_b, **{"Idempotency-Key": "k" * 256})
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_error")
    assert await billing.table_counts() == before
    # The same key belongs to its user: another user's identical key is independent.
    other = await billing.buy(uuid.uuid4(), plan_a, **{"Idempotency-Key": "key-1"})
    assert other.status_code == 201
    assert other.json()["payment"]["id"] != first.json()["payment"]["id"]


async def test_fifty_concurrent_requests_with_one_key_make_one_payment(billing):
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    responses = await asyncio.gather(
        *(billing.buy(user, plan_id, **{"Idempotency-Key": "double-click"}) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {201}
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert await billing.count("payments", "user_id = :u", u=user) == 1
    assert await billing.count("subscriptions", "user_id = :u", u=user) == 1
    payment_id = bodies[0]["payment"]["id"]
    registrations = [
        c
        for c in billing.fake.calls_to("POST", "/internal/v1/payments")
        if c.body["payment_id"] == payment_id
    ]
    assert len(registrations) == 1


async def test_fifty_concurrent_requests_with_different_keys_make_one_open_payment(billing):
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    responses = await asyncio.gather(
        *(billing.buy(user, plan_id, **{"Idempotency-Key": f"key-{i}"}) for i in range(50))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [201]
    assert len({r.json()["payment"]["id"] for r in responses}) == 1
    assert await billing.count("payments", "user_id = :u", u=user) == 1
    assert await billing.count("subscriptions", "user_id = :u", u=user) == 1


async def test_gateway_down_answers_503_keeps_the_rows_and_a_retry_registers(billing):
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    billing.fake.mode = "down"
    response = await billing.buy(user, plan_id, **{"Idempotency-Key": "while-down"})
    assert (response.status_code, response.json()["code"]) == (503, "gateway_unavailable")
    assert await billing.count("payments", "user_id = :u AND status = 'created'", u=user) == 1
    assert await billing.count("idempotency_keys", "owner = :u", u=str(user)) == 0

    billing.fake.mode = "ok"
    retry = await billing.buy(user, plan_id, **{"Idempotency-Key": "while-down"})
    assert retry.status_code == 200
    assert retry.json()["payment"]["status"] == "pending"
    assert await billing.count("payments", "user_id = :u", u=user) == 1


async def test_a_retry_never_answers_a_payment_pay_api_has_not_heard_of(billing):
    """A purchase that died holding the registration's lease (its database connection cut, as
    the fault suite does) must not make the user's retry answer a payment link pay_api would
    answer 404: the retry waits out that lease (one pay_api call long) and registers it."""
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    billing.fake.mode = "down"
    assert (await billing.buy(user, plan_id)).status_code == 503
    billing.fake.mode = "ok"
    payment_id = await billing.scalar("SELECT id::text FROM payments WHERE user_id = :u", u=user)
    async with billing.resources.engine.begin() as conn:  # the dead request's lease, 3 s left
        await conn.execute(
            text("UPDATE payments SET claimed_until = :until WHERE id = :p"),
            {"until": clock.now() + timedelta(seconds=3), "p": payment_id},
        )

    def registrations() -> int:
        calls = billing.fake.calls_to("POST", "/internal/v1/payments")
        return sum(c.body["payment_id"] == payment_id for c in calls)

    before = registrations()
    retry = await billing.buy(user, plan_id)

    assert retry.status_code == 200, retry.text
    assert retry.json()["payment"]["id"] == payment_id
    assert retry.json()["payment"]["status"] == "pending"
    assert registrations() == before + 1


async def test_worker_registers_payments_written_while_the_gateway_was_down(billing):
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    billing.fake.mode = "down"
    response = await billing.buy(user, plan_id)
    assert response.status_code == 503
    payment_id = await billing.scalar("SELECT id::text FROM payments WHERE user_id = :u", u=user)
    billing.fake.mode = "ok"
    # Not before its back-off is due...
    await billing.work()
    assert (await billing.payment(user, payment_id))["status"] == "created"
    # ...then registered.
    later = await billing.scalar(
        "SELECT next_check_at FROM payments WHERE id = :p", p=uuid.UUID(payment_id)
    )
    await billing.work(now=later)
    payment = await billing.payment(user, payment_id)
    assert payment["status"] == "pending"
    assert payment_id in billing.fake.payments


async def test_a_held_plan_cannot_be_bought_again(billing):
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    before = await billing.table_counts()
    response = await billing.buy(user, plan_id)
    assert (response.status_code, response.json()["code"]) == (409, "subscription_exists")
    assert await billing.table_counts() == before


async def _end_the_period(billing, subscription_id: str) -> None:
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE subscriptions SET current_period_start = now() - interval '31 days', "
                "current_period_end = now() - interval '1 second' WHERE id = :s"
            ),
            {"s": uuid.UUID(subscription_id)},
        )


async def test_buying_again_after_the_period_ended_expires_the_old_one_as_the_worker_does(billing):
    # The purchase expires an ended period the worker has not reached yet; it used to leave
    # auto_renew on (only the worker's copy turned it off): both now go through one transition.
    plan_id = await billing.put_plan(refund_window_days=0)
    user = uuid.uuid4()
    old = (await billing.paid_subscription(user, plan_id))["subscription"]["id"]
    # Canceled at period end (a renewing subscription would enter grace and still hold the plan).
    canceled = await billing.client.post(
        f"/api/v1/subscriptions/{old}/cancel", headers=as_user(user)
    )
    assert canceled.json()["action"] == "canceled"
    await _end_the_period(billing, old)
    response = await billing.buy(user, plan_id)
    assert response.status_code == 201, response.text
    row = await billing.scalar(
        "SELECT row(status, auto_renew, ended_at IS NOT NULL)::text FROM subscriptions "
        "WHERE id = :s",
        s=uuid.UUID(old),
    )
    assert row == "(expired,f,t)"
    assert (
        await billing.count(
            "outbox",
            "payload->>'reason' = 'subscription expired' AND payload->>'user_id' = :u",
            u=str(user),
        )
        == 1
    )


async def test_a_suspended_subscription_still_holds_its_plan(billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    subscription = (await billing.paid_subscription(user, plan_id))["subscription"]["id"]
    async with billing.resources.engine.begin() as conn:  # as a renewal's grace running out would
        await conn.execute(
            text("UPDATE subscriptions SET status = 'suspended' WHERE id = :s"),
            {"s": uuid.UUID(subscription)},
        )
    assert (await billing.access(user, film))["allowed"] is False
    before = await billing.table_counts()
    response = await billing.buy(user, plan_id)
    assert (response.status_code, response.json()["code"]) == (409, "subscription_exists")
    assert await billing.table_counts() == before


async def test_a_renewing_subscription_still_holds_the_plan_after_its_period_end(billing):
    # Its renewal may still be paid (grace): buying the plan again is refused, nothing changes.
    plan_id = await billing.put_plan()
    user = uuid.uuid4()
    old = (await billing.paid_subscription(user, plan_id))["subscription"]["id"]
    await _end_the_period(billing, old)
    before = await billing.table_counts()
    response = await billing.buy(user, plan_id)
    assert response.status_code == 409 and response.json()["code"] == "subscription_exists"
    assert await billing.table_counts() == before
