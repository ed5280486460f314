"""Stripe's answer to the confirmation is lost (a real reset connection, through a proxy in front of
localstripe): the payment is `unknown` until Stripe's news settles it, and is never charged twice."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from pay_api.gateway import IntentState
from pay_api.outbox import OutboxMessage
from pay_api.payments import state
from pay_api.payments.models import Customer, Payment
from sqlalchemy import select

from pay_api import create_app

from .conftest import auth, make_settings
from .lossy_proxy import LossyProxy

CONFIRM = r"/v1/payment_intents/\w+/confirm"


@pytest.fixture(scope="module")
def proxy(localstripe):
    lossy = LossyProxy(upstream_port=urlsplit(localstripe).port)
    yield lossy
    lossy.close()


@pytest.fixture
def lossy(proxy, database_url, billing):
    """A test client of pay_api talking to Stripe through the proxy (same database as `api`)."""
    proxy.reset()
    application = create_app(make_settings(database_url, proxy.url, billing.url))
    application.config["TESTING"] = True
    yield application.test_client()
    application.extensions["pay_api.db"].dispose()


def succeeded(charges):
    return [c for c in charges if c["status"] == "succeeded"]


def outbox_statuses(db, payment_id) -> list[str]:
    with db.transaction() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.payload["payment_id"].astext == str(payment_id))
            .order_by(OutboxMessage.id)
        ).all()
        return [r.payload["status"] for r in rows]


def row(db, payment_id) -> Payment:
    with db.transaction() as session:
        return session.get(Payment, uuid.UUID(str(payment_id)))


def lose_the_confirm_answer(api, lossy, proxy, *, reached_stripe: bool = True):
    """Save a card, then charge it while every try of the SDK loses its answer."""
    payment = api.create_payment(amount=1299, currency="usd")
    payment_id = payment["payment_id"]
    seti = api.save_card(payment_id, "4242424242424242")
    proxy.lose("POST", CONFIRM, after_upstream=reached_stripe, times=10)
    response = lossy.post(f"/pay/{payment_id}/charge", json={"setup_intent_id": seti})
    proxy.clear()
    return payment_id, seti, response


def test_a_lost_confirm_answer_is_unknown_then_refresh_settles_it(api, lossy, proxy, db):
    payment_id, _, response = lose_the_confirm_answer(api, lossy, proxy)

    # The page is told the truth: money may be moving, do not pay again.
    assert response.status_code == 200, response.json
    assert response.json["status"] == "processing"
    message = response.json["message"].lower()
    assert "checking with your bank" in message and "do not pay again" in message
    assert proxy.forwarded("POST", CONFIRM) >= 1  # Stripe did get the confirmation

    seen = api.get_payment(payment_id)
    assert seen["status"] == "unknown"
    intent_id = seen["stripe_payment_intent_id"]
    assert row(db, payment_id).confirm_attempts == 1
    assert outbox_statuses(db, payment_id) == ["unknown"]  # billing is told, same transaction
    # Stripe did charge.
    assert len(succeeded(api.stripe_charges(intent_id))) == 1
    page = api.client.get(f"/pay/{payment_id}").get_data(as_text=True)
    assert "checking with your bank" in page.lower()

    # The reconciler's refresh learns what Stripe did.
    settled = api.get_payment(payment_id, refresh=True)
    assert settled["status"] == "succeeded"
    assert outbox_statuses(db, payment_id) == ["unknown", "succeeded"]
    assert len(succeeded(api.stripe_charges(intent_id))) == 1
    assert api.stripe_charges(intent_id)[0]["amount"] == 1299


def test_a_retry_on_an_unknown_payment_that_was_charged_does_not_confirm_again(
    api, lossy, proxy, db
):
    payment_id, seti, response = lose_the_confirm_answer(api, lossy, proxy)
    assert response.json["status"] == "processing"
    assert api.get_payment(payment_id)["status"] == "unknown"
    confirms = proxy.forwarded("POST", CONFIRM)

    # Another card from a second tab, then the same request again (the browser retried it).
    other_card = api.save_card(payment_id, "5555555555554444")
    second = lossy.post(f"/pay/{payment_id}/charge", json={"setup_intent_id": other_card})
    assert second.status_code == 200 and second.json == {"status": "succeeded"}
    again = lossy.post(f"/pay/{payment_id}/charge", json={"setup_intent_id": seti})
    assert again.status_code == 200 and again.json == {"status": "succeeded"}

    assert proxy.forwarded("POST", CONFIRM) == confirms  # no confirmation was sent again
    state_now = api.get_payment(payment_id)
    assert state_now["status"] == "succeeded"
    assert row(db, payment_id).confirm_attempts == 1
    assert len(succeeded(api.stripe_charges(state_now["stripe_payment_intent_id"]))) == 1


def test_a_confirm_that_never_reached_stripe_is_confirmed_on_retry(api, lossy, proxy, db):
    payment_id, seti, response = lose_the_confirm_answer(api, lossy, proxy, reached_stripe=False)
    assert response.json["status"] == "processing"
    assert proxy.forwarded("POST", CONFIRM) == 0
    seen = api.get_payment(payment_id)
    assert seen["status"] == "unknown"
    intent_id = seen["stripe_payment_intent_id"]
    assert api.stripe_charges(intent_id) == []

    # The user retries (the same saved card): Stripe is asked first, then it is confirmed.
    again = lossy.post(f"/pay/{payment_id}/charge", json={"setup_intent_id": seti})
    assert again.status_code == 200 and again.json == {"status": "succeeded"}
    assert proxy.forwarded("POST", CONFIRM) == 1
    assert api.get_payment(payment_id)["status"] == "succeeded"
    assert row(db, payment_id).confirm_attempts == 2
    assert len(succeeded(api.stripe_charges(intent_id))) == 1
    assert outbox_statuses(db, payment_id) == ["unknown", "pending", "succeeded"]


def test_an_unknown_payment_can_be_canceled(api, lossy, proxy, localstripe):
    payment_id, _, _ = lose_the_confirm_answer(api, lossy, proxy, reached_stripe=False)
    assert api.get_payment(payment_id)["status"] == "unknown"
    response = api.client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=auth())
    assert response.status_code == 200
    assert response.json["status"] == "canceled"
    intent_id = response.json["stripe_payment_intent_id"]
    at_stripe = httpx.get(
        f"{localstripe}/v1/payment_intents/{intent_id}", auth=("sk_test_offline", "")
    ).json()
    assert at_stripe["status"] == "canceled"


def test_cancel_of_an_unknown_payment_stripe_charged_answers_succeeded(api, lossy, proxy):
    payment_id, _, _ = lose_the_confirm_answer(api, lossy, proxy)
    assert api.get_payment(payment_id)["status"] == "unknown"
    response = api.client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=auth())
    assert response.status_code == 200
    assert response.json["status"] == "succeeded"


def test_webhooks_settle_unknown_except_news_of_an_earlier_attempt(db, api):
    """The state machine alone: a webhook about the lost attempt (or a final one) settles
    `unknown`; a non-final webhook about an earlier card does not; a snapshot asked of Stripe
    (`current`) always does."""
    payment = api.create_payment()
    payment_id = uuid.UUID(payment["payment_id"])

    def snapshot(status: str, pm: str | None, **extra) -> IntentState:
        return IntentState.from_stripe(
            {
                "id": "pi_state_machine",
                "status": status,
                "amount": 1299,
                "currency": "usd",
                "payment_method": pm,
                "last_payment_error": None,
                "metadata": {"payment_id": str(payment_id)},
                "customer": "cus_state_machine",
                **extra,
            }
        )

    def unknown(session) -> Payment:
        row = session.get(Payment, payment_id, with_for_update=True)
        row.status, row.payment_method_id, row.confirm_attempts = "unknown", "pm_lost", 2
        row.stripe_payment_intent_id = "pi_state_machine"
        if session.get(Customer, row.user_id) is None:
            session.add(Customer(user_id=row.user_id, stripe_customer_id="cus_state_machine"))
        return row

    with db.transaction() as session:
        row = unknown(session)
        assert not state.apply_intent(session, row, snapshot("requires_payment_method", "pm_old"))
        assert row.status == "unknown"
        assert state.apply_intent(session, row, snapshot("requires_action", "pm_lost"))
        assert (row.status, row.stripe_status) == ("pending", "requires_action")

        row = unknown(session)
        assert state.apply_intent(session, row, snapshot("processing", "pm_lost"))
        assert row.status == "processing"

        row = unknown(session)
        assert state.apply_intent(session, row, snapshot("succeeded", "pm_old"))
        assert row.status == "succeeded"

        row = unknown(session)
        current = snapshot("requires_payment_method", "pm_old")
        assert state.apply_intent(session, row, current, current=True)
        # The lost confirmation never reached Stripe: the latest attempt is the one Stripe holds.
        assert (row.status, row.payment_method_id) == ("pending", "pm_old")
