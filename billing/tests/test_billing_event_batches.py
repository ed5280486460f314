"""Events from pay_api in batches (`POST /internal/v1/payment-events/batch`): one transaction,
each event in a SAVEPOINT of its own — the good ones applied in order, the refused ones (or those
hit by a database error) reported and leaving no trace; limits, malformed bodies, auth."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from conftest import as_service, as_user
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")

BATCH = "/internal/v1/payment-events/batch"


def event(payment: dict, status: str, **fields: Any) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "object": "payment",
        "payment_id": payment["id"],
        "refund_id": None,
        "status": status,
        "amount": payment["amount"],
        "currency": payment["currency"],
        "amount_refunded": 0,
        "refunded_outside": 0,
        "failure_code": None,
        "failure_message": None,
        "stripe_id": "pi_test",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        **fields,
    }


async def send(billing, events: list[dict], **headers: str):
    return await billing.client.post(
        BATCH, json={"events": events}, headers={**as_service("pay_api"), **headers}
    )


async def bought(billing, **plan_fields) -> tuple[uuid.UUID, dict]:
    plan_id = await billing.put_plan(**plan_fields)
    user = uuid.uuid4()
    response = await billing.buy(user, plan_id)
    assert response.status_code == 201, response.text
    return user, response.json()


async def processed(billing, event_ids: list[str]) -> int:
    return await billing.count(
        "processed_events", "event_id = ANY(:ids)", ids=[uuid.UUID(e) for e in event_ids]
    )


async def test_a_mixed_batch_applies_the_good_and_reports_the_bad_in_order(billing):
    user_a, first = await bought(billing, price_amount=700)
    user_b, second = await bought(billing, price_amount=900)
    a, b = first["payment"], second["payment"]
    # An event billing already applied, sent again (pay_api lost billing's answer).
    seen = event(b, "processing")
    assert (await send(billing, [seen])).json()["results"] == [
        {"event_id": seen["event_id"], "applied": True}
    ]
    before = await billing.table_counts()

    good = event(a, "succeeded")
    unknown = event({**a, "id": str(uuid.uuid4())}, "succeeded")
    mismatch = event(b, "succeeded", amount=1)
    unknown_refund = event(b, "succeeded", object="refund", refund_id=str(uuid.uuid4()))
    wrong_currency = event(a, "canceled", currency="eur")
    later = event(b, "succeeded")
    same_again = dict(later)  # the same event twice in one batch: applied once
    batch = [good, unknown, seen, mismatch, unknown_refund, wrong_currency, later, same_again]
    response = await send(billing, batch)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["event_id"] for r in results] == [e["event_id"] for e in batch]
    assert results[0] == {"event_id": good["event_id"], "applied": True}
    assert results[2] == {"event_id": seen["event_id"], "applied": False}
    assert results[6] == {"event_id": later["event_id"], "applied": True}
    assert results[7] == {"event_id": later["event_id"], "applied": False}
    errors = {i: results[i]["error"] for i in (1, 3, 4, 5)}
    assert {i: (e["status"], e["code"]) for i, e in errors.items()} == {
        1: (404, "payment_not_found"),
        3: (422, "event_mismatch"),
        4: (404, "refund_not_found"),
        5: (422, "event_mismatch"),
    }
    assert all(e["message"] and set(e) == {"status", "code", "message"} for e in errors.values())
    assert all(set(results[i]) == {"event_id", "error"} for i in errors)

    # The good ones: both paid, each with its one charge; the bad ones left nothing behind.
    for user, payment in ((user_a, a), (user_b, b)):
        assert (await billing.payment(user, payment["id"]))["status"] == "succeeded"
        assert (
            await billing.count(
                "ledger_entries", "payment_id = :p AND kind = 'charge'", p=uuid.UUID(payment["id"])
            )
            == 1
        )
        (sub,) = (await billing.client.get("/api/v1/subscriptions", headers=as_user(user))).json()[
            "items"
        ]
        assert sub["status"] == "active"
    refused = [unknown, mismatch, unknown_refund, wrong_currency]
    assert await processed(billing, [e["event_id"] for e in refused]) == 0
    after = await billing.table_counts()
    assert after["processed_events"] - before["processed_events"] == 2  # good, later
    assert after["ledger_entries"] - before["ledger_entries"] == 2  # one charge each
    assert after["payments"] == before["payments"] and after["refunds"] == before["refunds"]


async def test_events_of_one_payment_apply_in_the_order_given(billing):
    user, purchase = await bought(billing)
    payment = purchase["payment"]
    at = "2026-03-01T10:00:{:02d}+00:00".format
    batch = [
        event(payment, "processing", occurred_at=at(10)),
        event(payment, "pending", failure_code="insufficient_funds", occurred_at=at(20)),
        event(payment, "processing", occurred_at=at(30)),
        event(payment, "succeeded", occurred_at=at(40)),
        event(payment, "pending", occurred_at=at(50)),  # late: never moves it back
    ]
    results = (await send(billing, batch)).json()["results"]
    assert [r["applied"] for r in results] == [True, True, True, True, False]
    assert (await billing.payment(user, payment["id"]))["status"] == "succeeded"


async def test_a_batch_of_news_billing_already_has_only_fills_the_inbox(billing):
    """pay_api's deferred events of renewals billing's worker already applied: nothing moves,
    each id goes into the inbox (so a repeat is a duplicate), each answers `applied: false`."""
    paid = []
    for price in (700, 900):
        user, purchase = await bought(billing, price_amount=price)
        payment = purchase["payment"]
        assert (await send(billing, [event(payment, "succeeded")])).json()["results"][0]["applied"]
        paid.append((user, payment))
    before = await billing.table_counts()
    again = [event(payment, "succeeded") for _, payment in paid]
    results = (await send(billing, again)).json()["results"]
    assert results == [{"event_id": e["event_id"], "applied": False} for e in again]
    assert await processed(billing, [e["event_id"] for e in again]) == 2
    after = await billing.table_counts()
    assert after["processed_events"] - before["processed_events"] == 2
    assert {k: v for k, v in after.items() if k != "processed_events"} == {
        k: v for k, v in before.items() if k != "processed_events"
    }
    # The same ids again: duplicates, still nothing moves.
    assert (await send(billing, again)).json()["results"] == results
    assert (await billing.table_counts())["processed_events"] == after["processed_events"]

    # One event in the batch carries news (a refund made at Stripe's Dashboard): the batch is
    # applied in full, and that refund is recorded.
    (user, refunded), (_, other) = paid
    news = [event(refunded, "succeeded", amount_refunded=300, refunded_outside=300),
            event(other, "succeeded")]  # fmt: skip
    results = (await send(billing, news)).json()["results"]
    assert [r["applied"] for r in results] == [True, False]
    assert (await billing.payment(user, refunded["id"]))["status"] == "partially_refunded"
    assert (await billing.table_counts())["refunds"] == before["refunds"] + 1


@pytest.mark.parametrize(
    ("sqlstate", "status", "code"),
    [
        ("40P01", 409, "transaction_conflict"),  # deadlock_detected
        ("40001", 409, "transaction_conflict"),  # serialization_failure
        ("22003", 422, "validation_error"),  # numeric_value_out_of_range
        ("XX000", 500, "internal_error"),
    ],
)
async def test_a_database_error_inside_one_event_rolls_back_that_event_alone(
    billing, sqlstate, status, code
):
    """The database itself fails one event late, on the ledger's charge row after the inbox
    row and the payment's move (a trigger raises, where a deadlock would): that event's
    savepoint rolls all of it back, the events before and after it still apply and commit."""
    user_a, first = await bought(billing)
    user_b, second = await bought(billing)
    user_c, third = await bought(billing)
    doomed = event(second["payment"], "succeeded")
    engine = billing.resources.engine
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"""
                CREATE FUNCTION test_fail_one_event() RETURNS trigger AS $$
                BEGIN
                    IF NEW.payment_id = '{doomed["payment_id"]}' THEN
                        RAISE EXCEPTION 'injected by the test' USING ERRCODE = '{sqlstate}';
                    END IF;
                    RETURN NEW;
                END $$ LANGUAGE plpgsql
                """
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER test_fail_one_event BEFORE INSERT ON ledger_entries"
                " FOR EACH ROW EXECUTE FUNCTION test_fail_one_event()"
            )
        )
    try:
        batch = [event(first["payment"], "succeeded"), doomed, event(third["payment"], "succeeded")]
        response = await send(billing, batch)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_fail_one_event ON ledger_entries"))
            await conn.execute(text("DROP FUNCTION test_fail_one_event()"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0] == {"event_id": batch[0]["event_id"], "applied": True}
    assert (results[1]["error"]["status"], results[1]["error"]["code"]) == (status, code)
    assert "injected" not in results[1]["error"]["message"]  # no database text to the caller
    assert results[2] == {"event_id": batch[2]["event_id"], "applied": True}
    assert (await billing.payment(user_a, first["payment"]["id"]))["status"] == "succeeded"
    assert (await billing.payment(user_b, second["payment"]["id"]))["status"] == "pending"
    assert (await billing.payment(user_c, third["payment"]["id"]))["status"] == "succeeded"
    assert await processed(billing, [doomed["event_id"]]) == 0
    assert (
        await billing.count("ledger_entries", "payment_id = :p", p=uuid.UUID(doomed["payment_id"]))
        == 0
    )
    # The payment's row lock went with the savepoint: pay_api's retry applies it.
    again = await send(billing, [doomed])
    assert again.json()["results"] == [{"event_id": doomed["event_id"], "applied": True}]
    assert (await billing.payment(user_b, second["payment"]["id"]))["status"] == "succeeded"


async def test_each_event_logs_under_its_own_request_id(billing):
    from billing.log import request_id_var

    _, first = await bought(billing)
    _, second = await bought(billing)
    seen: list[tuple[str, str | None, dict]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), request_id_var.get(), record.__dict__))

    capture = Capture(level=logging.INFO)
    billing_logger = logging.getLogger("billing")
    billing_logger.addHandler(capture)
    old_level = billing_logger.level
    billing_logger.setLevel(logging.INFO)
    try:
        response = await send(
            billing,
            [
                event(first["payment"], "processing", request_id="purchase-one"),
                event(second["payment"], "processing", amount=1, request_id="purchase-two"),
                event(second["payment"], "processing"),  # none: the batch request's own id
            ],
            **{"X-Request-ID": "the-batch"},
        )
    finally:
        billing_logger.removeHandler(capture)
        billing_logger.setLevel(old_level)
    assert response.status_code == 200
    moved = [(rid, fields.get("payment_id")) for msg, rid, fields in seen if msg == "payment moved"]
    assert moved == [
        ("purchase-one", first["payment"]["id"]),
        ("the-batch", second["payment"]["id"]),
    ]
    refused = [(rid, fields.get("error_code")) for msg, rid, fields in seen if "refused" in msg]
    assert refused == [("purchase-two", "event_mismatch")]
    assert request_id_var.get() is None  # nothing leaks past the request


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"events": []}, "no events"),
        ({}, "no events field"),
        ({"events": "x"}, "not a list"),
        ([], "not an object"),
        ("events", "a string"),
    ],
)
async def test_malformed_bodies_are_refused(billing, body, what):
    response = await billing.client.post(BATCH, json=body, headers=as_service("pay_api"))
    assert (response.status_code, response.json()["code"]) == (422, "validation_error"), what


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "nope"},
        {"status": "x" * 33},
        {"amount": -1},
        {"currency": "dollars"},
        {"object": "invoice"},
        {"request_id": "r" * 201},
        {"payment_id": None},
    ],
)
async def test_one_malformed_event_refuses_the_whole_batch_and_applies_nothing(billing, bad):
    user, purchase = await bought(billing)
    payment = purchase["payment"]
    before = await billing.table_counts()
    batch = [event(payment, "succeeded"), {**event(payment, "succeeded"), **bad}]
    response = await send(billing, batch)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert await billing.table_counts() == before
    assert (await billing.payment(user, payment["id"]))["status"] == "pending"


async def test_a_batch_holds_one_to_a_hundred_events(billing):
    user, purchase = await bought(billing)
    payment = purchase["payment"]
    before = await billing.table_counts()
    too_many = [event(payment, "processing") for _ in range(101)]
    response = await send(billing, too_many)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert await billing.table_counts() == before

    full = too_many[:100]
    response = await send(billing, full)
    assert response.status_code == 200, response.text
    assert [r["applied"] for r in response.json()["results"]] == [True] + [False] * 99
    assert await processed(billing, [e["event_id"] for e in full]) == 100
    assert (await billing.payment(user, payment["id"]))["status"] == "processing"


async def test_batches_take_only_pay_api_tokens(billing):
    user, purchase = await bought(billing)
    batch = [event(purchase["payment"], "succeeded")]
    for headers, status, code in (
        (as_user(uuid.uuid4()), 401, "token_invalid"),
        (as_service("etl"), 403, "forbidden"),
        (as_service("admin"), 403, "forbidden"),
        ({}, 401, "not_authenticated"),
    ):
        response = await billing.client.post(BATCH, json={"events": batch}, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert await processed(billing, [batch[0]["event_id"]]) == 0
    assert (await billing.payment(user, purchase["payment"]["id"]))["status"] == "pending"
