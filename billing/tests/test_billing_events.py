"""Events from pay_api: applied once, monotonic, checked; and the database's own guards."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from conftest import as_service, as_user
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _bought(billing, **plan_fields):
    plan_id = await billing.put_plan(**plan_fields)
    user = uuid.uuid4()
    response = await billing.buy(user, plan_id)
    assert response.status_code == 201
    return user, plan_id, response.json()


async def test_succeeded_event_activates_for_one_calendar_month_and_writes_one_charge(billing):
    user, _, purchase = await _bought(billing, price_amount=700)
    payment = purchase["payment"]
    response = await billing.event(payment, "succeeded")
    assert response.json() == {"applied": True}
    paid = await billing.payment(user, payment["id"])
    assert paid["status"] == "succeeded"
    subs = (await billing.client.get("/api/v1/subscriptions", headers=as_user(user))).json()[
        "items"
    ]
    (sub,) = subs
    assert sub["status"] == "active"
    start = datetime.fromisoformat(sub["current_period_start"])
    end = datetime.fromisoformat(sub["current_period_end"])
    expected_month = start.month % 12 + 1
    assert end.month == expected_month and end.day <= start.day and end > start
    assert (
        await billing.count(
            "ledger_entries",
            "payment_id = :p AND kind = 'charge' AND amount = 700",
            p=uuid.UUID(payment["id"]),
        )
        == 1
    )

    # The same event again, and another "succeeded" event: nothing more happens.
    duplicate_id = str(uuid.uuid4())
    assert (await billing.event(payment, "succeeded", event_id=duplicate_id)).json() == {
        "applied": False
    }
    assert (await billing.event(payment, "succeeded", event_id=duplicate_id)).json() == {
        "applied": False
    }
    # A late "pending" never moves it back.
    assert (await billing.event(payment, "pending")).json() == {"applied": False}
    assert (await billing.payment(user, payment["id"]))["status"] == "succeeded"
    assert await billing.count("ledger_entries", "payment_id = :p", p=uuid.UUID(payment["id"])) == 1


async def test_day_periods(billing):
    user, _, purchase = await _bought(billing, period_unit="day", period_count=3)
    await billing.event(purchase["payment"], "succeeded")
    (sub,) = (await billing.client.get("/api/v1/subscriptions", headers=as_user(user))).json()[
        "items"
    ]
    length = datetime.fromisoformat(sub["current_period_end"]) - datetime.fromisoformat(
        sub["current_period_start"]
    )
    assert length.days == 3 and length.seconds == 0


async def test_decline_keeps_it_pending_with_the_reason_then_failure_frees_the_plan(billing):
    user, plan_id, purchase = await _bought(billing)
    payment = purchase["payment"]
    declined = await billing.event(
        payment, "pending", failure_code="card_declined", failure_message="Declined"
    )
    assert declined.json() == {"applied": False}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["failure_code"]) == ("pending", "card_declined")
    assert (await billing.event(payment, "processing")).json() == {"applied": True}
    assert (await billing.event(payment, "failed", failure_code="expired_card")).json() == {
        "applied": True
    }
    assert (await billing.payment(user, payment["id"]))["status"] == "failed"
    status = await billing.scalar(
        "SELECT status FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    assert status == "incomplete_expired"
    # The user may buy again: a new subscription and payment.
    again = await billing.buy(user, plan_id)
    assert again.status_code == 201
    assert again.json()["payment"]["id"] != payment["id"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": 1}, 422, "event_mismatch"),
        ({"currency": "eur"}, 422, "event_mismatch"),
        ({"status": "exploded"}, 422, "validation_error"),
        ({"object": "invoice"}, 422, "validation_error"),
        ({"event_id": "nope"}, 422, "validation_error"),
        ({"payment_id": str(uuid.uuid4())}, 404, "payment_not_found"),
        ({"object": "refund", "refund_id": str(uuid.uuid4())}, 404, "refund_not_found"),
    ],
)
async def test_bad_events_are_refused_and_change_nothing(billing, change, status, code):
    user, _, purchase = await _bought(billing)
    payment = purchase["payment"]
    before = await billing.table_counts()
    response = await billing.event(payment, **{"status": "succeeded", **change})
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert await billing.table_counts() == before
    assert (await billing.payment(user, payment["id"]))["status"] == "pending"


async def test_events_take_only_pay_api_tokens(billing):
    _, _, purchase = await _bought(billing)
    body = {
        "event_id": str(uuid.uuid4()),
        "object": "payment",
        "payment_id": purchase["payment"]["id"],
        "status": "succeeded",
        "amount": 999,
        "currency": "usd",
    }
    for headers, status in ((as_user(uuid.uuid4()), 401), (as_service("etl"), 403), ({}, 401)):
        response = await billing.client.post(
            "/internal/v1/payment-events", json=body, headers=headers
        )
        assert response.status_code == status
    assert (
        await billing.count(
            "processed_events", "payment_id = :p", p=uuid.UUID(purchase["payment"]["id"])
        )
        == 0
    )


async def test_payments_list_is_own_newest_first_and_paged(billing):
    user, other = uuid.uuid4(), uuid.uuid4()
    ids = []
    for _ in range(3):
        plan_id = await billing.put_plan()
        ids.append((await billing.buy(user, plan_id)).json()["payment"]["id"])
    await billing.buy(other, plan_id)
    page = (
        await billing.client.get("/api/v1/payments?limit=2&offset=0", headers=as_user(user))
    ).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [p["id"] for p in page["items"]] == [ids[2], ids[1]]
    rest = (
        await billing.client.get("/api/v1/payments?limit=2&offset=2", headers=as_user(user))
    ).json()
    assert [p["id"] for p in rest["items"]] == [ids[0]]
    bad = await billing.client.get("/api/v1/payments?limit=0", headers=as_user(user))
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    # Someone else's payment, an unknown one, a malformed id.
    for payment_id, status, code in (
        (ids[0], 404, "payment_not_found"),
        (str(uuid.uuid4()), 404, "payment_not_found"),
        ("x", 422, "validation_error"),
    ):
        response = await billing.client.get(
            f"/api/v1/payments/{payment_id}", headers=as_user(other)
        )
        assert (response.status_code, response.json()["code"]) == (status, code)


async def test_the_database_guards_the_invariants(billing):
    """Even code that forgot a check cannot break these: the database refuses."""
    user, plan_id, purchase = await _bought(billing, price_amount=500)
    payment_id = uuid.UUID(purchase["payment"]["id"])
    await billing.event(purchase["payment"], "succeeded")
    engine = billing.resources.engine

    async def refused(sql: str, error=IntegrityError, **params):
        async with engine.connect() as conn:
            with pytest.raises(error):
                await conn.execute(text(sql), params)
            await conn.rollback()

    # One charge per payment.
    await refused(
        "INSERT INTO ledger_entries (payment_id, user_id, kind, amount, currency) VALUES (:p, :u, 'charge', 500, 'usd')",
        p=payment_id,
        u=user,
    )
    # The ledger is append-only.
    await refused(
        "UPDATE ledger_entries SET amount = 1 WHERE payment_id = :p", DBAPIError, p=payment_id
    )
    await refused("DELETE FROM ledger_entries WHERE payment_id = :p", DBAPIError, p=payment_id)
    # Refunded never exceeds the amount.
    await refused("UPDATE payments SET refunded_amount = 501 WHERE id = :p", p=payment_id)
    # One open first payment per (user, plan).
    sub_id = uuid.uuid4()
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                text(
                    "INSERT INTO subscriptions (id, user_id, plan_id, status, period_unit, period_count, refund_window_days, auto_renew, needs_attention)"
                    " VALUES (:s, :u, :pl, 'expired', 'month', 1, 1, true, false);"
                ),
                {"s": sub_id, "u": user, "pl": plan_id},
            )
            for _ in range(2):
                await conn.execute(
                    text(
                        "INSERT INTO payments (id, user_id, subscription_id, plan_id, kind, status, amount, currency, refunded_amount, description, expires_at, next_check_at, check_attempts)"
                        " VALUES (gen_random_uuid(), :u, :s, :pl, 'first', 'pending', 500, 'usd', 0, '', now(), now(), 0)"
                    ),
                    {"u": user, "s": sub_id, "pl": plan_id},
                )
        await conn.rollback()
    # An event id is applied once.
    await refused(
        "INSERT INTO processed_events (event_id, object, payment_id, status, applied) SELECT event_id, object, payment_id, status, applied FROM processed_events WHERE payment_id = :p",
        p=payment_id,
    )


async def test_processing_goes_back_to_pending_only_on_newer_news(billing):
    """An asynchronous failure after `processing` reopens the payment (the user may pay again or
    it expires); an event pay_api wrote before the one that made it processing changes nothing."""
    user, _, purchase = await _bought(billing)
    payment = purchase["payment"]
    at = "2026-03-01T10:00:{:02d}+00:00".format
    moved = await billing.event(payment, "processing", occurred_at=at(10))
    assert moved.json() == {"applied": True}
    # A decline of an earlier attempt, delivered late (pay_api retried it): ignored.
    late = await billing.event(payment, "pending", failure_code="card_declined", occurred_at=at(5))
    assert late.json() == {"applied": False}
    assert (await billing.payment(user, payment["id"]))["status"] == "processing"
    # The bank returned the debit after it was processing: pending again, with the reason.
    failed = await billing.event(
        payment,
        "pending",
        failure_code="insufficient_funds",
        failure_message="Not enough money.",
        occurred_at=at(20),
    )
    assert failed.json() == {"applied": True}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["failure_code"], shown["failure_message"]) == (
        "pending",
        "insufficient_funds",
        "Not enough money.",
    )
    # Paid with another card afterwards: as usual.
    assert (await billing.event(payment, "processing", occurred_at=at(30))).json() == {
        "applied": True
    }
    assert (await billing.event(payment, "succeeded", occurred_at=at(40))).json() == {
        "applied": True
    }
    assert (await billing.event(payment, "pending", occurred_at=at(50))).json() == {
        "applied": False
    }
    assert (await billing.payment(user, payment["id"]))["status"] == "succeeded"
