"""Notifications to billing: written with the state change, delivered, retried, never lost."""

import time
import uuid

import httpx
import jwt
from pay_api.db import utcnow
from pay_api.outbox import BillingSender, OutboxMessage, deliver_due
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from pay_api import create_app

from .conftest import SERVICE_SECRET, auth, free_port, make_settings, wait_until


def cancel(client, payment_id):
    response = client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=auth())
    assert response.status_code == 200
    return response.json


def rows_for(db, payment_id):
    with db.transaction() as session:
        return session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.payload["payment_id"].astext == str(payment_id))
            .order_by(OutboxMessage.id)
        ).all()


def make_due(db, payment_id):
    with db.transaction() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.payload["payment_id"].astext == str(payment_id))
            .values(next_attempt_at=utcnow())
        )


def deliver_all(db, sender):
    while deliver_due(db, sender):
        pass


def test_events_carry_the_contract_shape_and_a_service_token(app, client, db, api, billing):
    payment = api.create_payment(amount=1299, currency="usd")
    payment_id = payment["payment_id"]
    api.pay(payment_id, "4000000000000341")  # pending with a failure
    api.pay(payment_id)  # succeeded
    sender = BillingSender(app.extensions["pay_api.settings"])
    deliver_all(db, sender)

    sent = billing.requests_for(payment_id)
    assert [r["json"]["status"] for r in sent] == ["pending", "succeeded"]
    declined, paid = (r["json"] for r in sent)
    assert declined["failure_code"] == "card_declined"
    assert set(paid) == {
        "event_id",
        "object",
        "payment_id",
        "refund_id",
        "status",
        "amount",
        "currency",
        "amount_refunded",
        "refunded_outside",
        "failure_code",
        "failure_message",
        "stripe_id",
        "occurred_at",
        "request_id",
    }
    assert paid["object"] == "payment" and paid["refund_id"] is None
    assert paid["amount"] == 1299 and paid["currency"] == "usd" and paid["amount_refunded"] == 0
    assert paid["stripe_id"].startswith("pi_")
    assert len({r["json"]["event_id"] for r in sent}) == 2

    request = sent[-1]
    assert request["path"] == "/internal/v1/payment-events/batch"
    token = request["headers"]["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, SERVICE_SECRET, algorithms=["HS256"], audience="billing")
    assert claims["iss"] == "pay_api"
    assert claims["exp"] - claims["iat"] <= 300
    assert request["headers"]["X-Request-ID"]
    assert all(row.delivered_at is not None for row in rows_for(db, payment_id))


def test_refund_events_are_sent(app, client, db, api, billing):
    payment = api.create_payment(amount=800)
    api.pay(payment["payment_id"])
    refund_id = str(uuid.uuid4())
    body = {"refund_id": refund_id, "payment_id": payment["payment_id"], "amount": 300}
    assert client.post("/internal/v1/refunds", json=body, headers=auth()).status_code == 201
    deliver_all(db, BillingSender(app.extensions["pay_api.settings"]))
    refunds = [e for e in billing.events_for(payment["payment_id"]) if e["object"] == "refund"]
    assert len(refunds) == 1
    assert refunds[0]["refund_id"] == refund_id
    assert refunds[0]["status"] == "succeeded"
    assert refunds[0]["amount"] == 300 and refunds[0]["amount_refunded"] == 300
    assert refunds[0]["stripe_id"].startswith("re_")


def test_billing_answering_500_is_retried_with_the_same_event(app, client, db, api, billing):
    payment = api.create_payment()
    cancel(client, payment["payment_id"])
    sender = BillingSender(app.extensions["pay_api.settings"])

    billing.status = 500
    deliver_all(db, sender)
    (row,) = rows_for(db, payment["payment_id"])
    assert row.delivered_at is None
    assert row.attempts == 1
    assert row.next_attempt_at > utcnow()  # backed off
    assert "HTTP 500" in row.last_error
    deliver_all(db, sender)  # not due yet: not sent again
    assert len(billing.requests_for(payment["payment_id"])) == 1

    billing.status = 200
    make_due(db, payment["payment_id"])
    deliver_all(db, sender)
    (row,) = rows_for(db, payment["payment_id"])
    assert row.delivered_at is not None and row.attempts == 2
    sent = billing.requests_for(payment["payment_id"])
    assert [r["answered"] for r in sent] == [500, 200]
    assert sent[0]["json"]["event_id"] == sent[1]["json"]["event_id"]


def test_billing_down_loses_nothing(app, client, db, api, billing, database_url, localstripe):
    payment = api.create_payment()
    cancel(client, payment["payment_id"])
    down = make_settings(database_url, localstripe, f"http://127.0.0.1:{free_port()}")
    deliver_all(db, BillingSender(down))
    (row,) = rows_for(db, payment["payment_id"])
    assert row.delivered_at is None and row.attempts == 1
    assert "Connect" in row.last_error

    make_due(db, payment["payment_id"])
    deliver_all(db, BillingSender(app.extensions["pay_api.settings"]))
    assert rows_for(db, payment["payment_id"])[0].delivered_at is not None
    assert [e["status"] for e in billing.events_for(payment["payment_id"])] == ["canceled"]


def test_worker_once_delivers_what_is_due_and_serves_its_metrics(
    monkeypatch, client, db, api, billing, settings
):
    from pay_api import config, worker

    payment = api.create_payment()
    cancel(client, payment["payment_id"])
    metrics_port = free_port()
    for name, value in {
        "PAY_API_DATABASE_URL": settings.database_url,
        "STRIPE_SECRET_KEY": "sk_test_offline",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "SERVICE_JWT_SECRET": settings.service_jwt_secret,
        "BILLING_URL": billing.url,
        "PAY_API_WORKER_METRICS_PORT": str(metrics_port),
    }.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    try:
        assert worker.run(once=True) >= 1
    finally:
        config.get_settings.cache_clear()
    assert rows_for(db, payment["payment_id"])[0].delivered_at is not None
    assert [e["status"] for e in billing.events_for(payment["payment_id"])] == ["canceled"]
    # The worker's endpoint (it stays up with the process) says it delivered and when.
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    assert samples["pay_api_worker_deliveries_total"] >= 1
    assert time.time() - samples["pay_api_worker_last_round_timestamp_seconds"] < 60


def test_immediate_delivery_after_commit(database_url, localstripe, billing, api):
    settings = make_settings(database_url, localstripe, billing.url, PAY_API_OUTBOX_IMMEDIATE=True)
    immediate = create_app(settings)
    try:
        payment = api.create_payment()
        response = immediate.test_client().post(
            f"/internal/v1/payments/{payment['payment_id']}/cancel", headers=auth()
        )
        assert response.status_code == 200
        events = wait_until(
            lambda: billing.events_for(payment["payment_id"]), what="the immediate delivery"
        )
        assert [e["status"] for e in events] == ["canceled"]
    finally:
        immediate.extensions["pay_api.outbox"].shutdown()
        immediate.extensions["pay_api.db"].dispose()


def test_events_about_a_payment_carry_the_request_id_of_its_purchase(app, client, db, api, billing):
    """billing registers the payment under the purchase's request id; the page's charge (another
    request, its own id) makes the event, and billing gets the purchase's id back with it."""
    payment_id = str(uuid.uuid4())
    body = {
        "payment_id": payment_id,
        "user_id": str(uuid.uuid4()),
        "amount": 700,
        "currency": "usd",
        "description": "Basic",
        "return_url": None,
    }
    headers = {**auth(), "X-Request-ID": "purchase-req-42"}
    assert client.post("/internal/v1/payments", json=body, headers=headers).status_code == 201
    api.pay(payment_id)  # the page's requests carry ids of their own
    deliver_all(db, BillingSender(app.extensions["pay_api.settings"]))

    sent = billing.requests_for(payment_id)
    assert [r["json"]["status"] for r in sent] == ["succeeded"]
    assert sent[0]["json"]["request_id"] == "purchase-req-42"
