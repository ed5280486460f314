"""The money path, as the browser drives it, against a real localstripe."""

import threading
import uuid

from pay_api.payments.models import Customer, Payment
from sqlalchemy import select


def succeeded(charges):
    return [c for c in charges if c["status"] == "succeeded"]


def test_4242_is_charged_once(api, db):
    payment = api.create_payment(amount=1299, currency="usd")
    assert payment["status"] == "pending"
    assert payment["stripe_payment_intent_id"] is None

    answer = api.pay(payment["payment_id"], "4242424242424242")
    assert answer == {"status": "succeeded"}

    state = api.get_payment(payment["payment_id"], refresh=True)
    assert state["status"] == "succeeded"
    assert state["failure_code"] is None
    intent_id = state["stripe_payment_intent_id"]
    assert intent_id.startswith("pi_")
    charges = api.stripe_charges(intent_id)
    assert len(succeeded(charges)) == 1
    assert charges[0]["amount"] == 1299 and charges[0]["currency"] == "usd"

    page = api.client.get(f"/pay/{payment['payment_id']}/status").json
    assert page == {"status": "succeeded", "amount": 1299, "currency": "usd", "error": None}


def test_one_stripe_customer_per_user(api, db):
    user_id = uuid.uuid4()
    first = api.create_payment(user_id=user_id)
    second = api.create_payment(user_id=user_id)
    api.pay(first["payment_id"])
    api.pay(second["payment_id"])
    with db.transaction() as session:
        rows = session.scalars(select(Customer).where(Customer.user_id == user_id)).all()
    assert len(rows) == 1
    assert rows[0].stripe_customer_id.startswith("cus_")


def test_decline_then_retry_with_another_card_on_the_same_intent(api, db):
    payment = api.create_payment(amount=2500, currency="eur")
    payment_id = payment["payment_id"]

    declined = api.pay(payment_id, "4000000000000341")
    assert declined["status"] == "declined"
    assert declined["error"]["code"] == "card_declined"
    assert "declined" in declined["error"]["message"].lower()

    after_decline = api.get_payment(payment_id)
    assert after_decline["status"] == "pending"
    assert after_decline["failure_code"] == "card_declined"
    intent_id = after_decline["stripe_payment_intent_id"]
    assert intent_id

    status = api.client.get(f"/pay/{payment_id}/status").json
    assert status["status"] == "pending"
    assert "declined" in status["error"]["message"].lower()

    retried = api.pay(payment_id, "4242424242424242")
    assert retried == {"status": "succeeded"}

    final = api.get_payment(payment_id, refresh=True)
    assert final["status"] == "succeeded"
    assert final["stripe_payment_intent_id"] == intent_id  # the same PaymentIntent
    assert final["failure_code"] is None
    charges = api.stripe_charges(intent_id)
    assert len(succeeded(charges)) == 1
    assert [c["status"] for c in charges].count("failed") == 1


def test_the_same_card_submitted_twice_is_confirmed_once(api, db):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    seti = api.save_card(payment_id, "4242424242424242")
    assert api.charge(payment_id, seti).json == {"status": "succeeded"}
    assert api.charge(payment_id, seti).json == {"status": "succeeded"}
    with db.transaction() as session:
        row = session.get(Payment, uuid.UUID(payment_id))
        assert row.confirm_attempts == 1
        intent_id = row.stripe_payment_intent_id
    assert len(succeeded(api.stripe_charges(intent_id))) == 1


def test_concurrent_submits_with_two_cards_charge_once(app, api, localstripe, db):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    setis = [api.save_card(payment_id, "4242424242424242") for _ in range(2)]
    answers = []
    start = threading.Barrier(2)

    def submit(seti):
        start.wait()
        response = app.test_client().post(
            f"/pay/{payment_id}/charge", json={"setup_intent_id": seti}
        )
        answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=submit, args=(s,)) for s in setis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The second submit waited for the row lock, then saw the paid payment and answered it.
    assert sorted(answers, key=str) == [(200, {"status": "succeeded"})] * 2
    with db.transaction() as session:
        row = session.get(Payment, uuid.UUID(payment_id))
        assert row.confirm_attempts == 1
        intent_id = row.stripe_payment_intent_id
    assert len(succeeded(api.stripe_charges(intent_id))) == 1


def test_3ds_completed_then_synced(api):
    payment = api.create_payment(amount=990, currency="gbp")
    payment_id = payment["payment_id"]
    answer = api.pay(payment_id, "4000002760003184")
    assert answer["status"] == "requires_action"
    assert answer["client_secret"].startswith("pi_")
    assert api.get_payment(payment_id)["status"] == "pending"

    authenticated = api.authenticate(answer["client_secret"], success=True)
    assert authenticated["status"] == "succeeded"
    assert api.sync(payment_id) == {"status": "succeeded"}

    state = api.get_payment(payment_id)
    assert state["status"] == "succeeded"
    assert len(succeeded(api.stripe_charges(state["stripe_payment_intent_id"]))) == 1


def test_3ds_failed_is_not_charged_and_can_be_retried(api):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    answer = api.pay(payment_id, "4000002760003184")
    assert answer["status"] == "requires_action"

    failed = api.authenticate(answer["client_secret"], success=False)
    assert failed["status"] == "requires_payment_method"  # the mock reports it as a status
    synced = api.sync(payment_id)
    assert synced["status"] == "declined"
    assert synced["error"]["code"] == "payment_intent_authentication_failure"
    assert "3-D Secure" in synced["error"]["message"]

    state = api.get_payment(payment_id)
    assert state["status"] == "pending"
    intent_id = state["stripe_payment_intent_id"]
    assert succeeded(api.stripe_charges(intent_id)) == []

    assert api.pay(payment_id, "4242424242424242") == {"status": "succeeded"}
    assert len(succeeded(api.stripe_charges(intent_id))) == 1


def test_setup_intent_of_another_customer_is_refused(api):
    mine = api.create_payment()
    theirs = api.create_payment()
    their_seti = api.save_card(theirs["payment_id"], "4242424242424242")
    response = api.charge(mine["payment_id"], their_seti)
    assert response.status_code == 409
    assert response.json["code"] == "setup_intent_invalid"
    assert api.get_payment(mine["payment_id"])["stripe_payment_intent_id"] is None


def test_cancel_before_paying_closes_the_payment(api):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    response = api.client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=_auth())
    assert response.status_code == 200
    assert response.json["status"] == "canceled"
    refused = api.client.post(f"/pay/{payment_id}/setup-intent", json={})
    assert refused.status_code == 409
    assert refused.json["code"] == "payment_not_payable"


def test_cancel_after_a_decline_cancels_the_intent_at_stripe(api, localstripe):
    import httpx

    payment = api.create_payment()
    payment_id = payment["payment_id"]
    api.pay(payment_id, "4000000000000341")
    response = api.client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=_auth())
    assert response.json["status"] == "canceled"
    intent_id = response.json["stripe_payment_intent_id"]
    at_stripe = httpx.get(
        f"{localstripe}/v1/payment_intents/{intent_id}", auth=("sk_test_offline", "")
    ).json()
    assert at_stripe["status"] == "canceled"


def test_cancel_after_stripe_charged_answers_succeeded(api):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    answer = api.pay(payment_id, "4000002760003184")
    # The user finished 3-D Secure, but the page never called /sync: pay_api still says pending.
    api.authenticate(answer["client_secret"], success=True)
    assert api.get_payment(payment_id)["status"] == "pending"
    response = api.client.post(f"/internal/v1/payments/{payment_id}/cancel", headers=_auth())
    assert response.status_code == 200
    assert response.json["status"] == "succeeded"


def _auth():
    from .conftest import auth

    return auth()


def test_stripe_unreachable_is_503_gateway_unavailable(database_url, billing, api):
    from pay_api import create_app

    from .conftest import free_port, make_settings

    dead = make_settings(
        database_url,
        f"http://127.0.0.1:{free_port()}",
        billing.url,
        PAY_API_STRIPE_MAX_RETRIES=0,
    )
    offline = create_app(dead)
    try:
        payment = api.create_payment()
        response = offline.test_client().post(f"/pay/{payment['payment_id']}/setup-intent", json={})
        assert response.status_code == 503
        assert response.json["code"] == "gateway_unavailable"
        assert api.get_payment(payment["payment_id"])["status"] == "pending"
    finally:
        offline.extensions["pay_api.db"].dispose()
