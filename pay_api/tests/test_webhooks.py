"""POST /webhooks/stripe: signature on the raw body, inbox, state machine, outbox."""

import hashlib
import hmac
import json
import threading
import time
import uuid

import httpx
import pytest
from pay_api.outbox import OutboxMessage
from pay_api.webhooks.models import StripeEvent
from sqlalchemy import func, select
from werkzeug.serving import make_server

from pay_api import create_app

from .conftest import WEBHOOK_SECRET, free_port, make_settings, wait_until


def signed(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256)
    return f"t={timestamp},v1={signature.hexdigest()}"


def event(event_type: str, obj: dict, event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:14]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2017-08-15",
        "data": {"object": obj},
    }
    return json.dumps(body, indent=2).encode()


def intent(intent_id: str, status: str, *, amount=1299, currency="usd", error=None, pm=None):
    return {
        "id": intent_id,
        "object": "payment_intent",
        "status": status,
        "amount": amount,
        "currency": currency,
        "payment_method": pm,
        "last_payment_error": error,
        "metadata": {},
    }


def post(client, payload: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/webhooks/stripe", data=payload, headers=headers)


def counts(db):
    with db.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(StripeEvent)),
            session.scalar(select(func.count()).select_from(OutboxMessage)),
        )


@pytest.fixture
def declined_payment(api):
    """A payment whose intent exists at localstripe (declined once): pending, retryable."""
    payment = api.create_payment()
    api.pay(payment["payment_id"], "4000000000000341")
    return api.get_payment(payment["payment_id"])


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "garbage",
        "t=1,v1=00",
        "wrong-secret",
        "too-old",
    ],
)
def test_bad_signature_is_400_and_nothing_is_stored(client, db, declined_payment, signature):
    payload = event(
        "payment_intent.succeeded",
        intent(declined_payment["stripe_payment_intent_id"], "succeeded"),
    )
    if signature == "wrong-secret":
        signature = signed(payload, secret="whsec_somebody_else")
    elif signature == "too-old":
        signature = signed(payload, at=int(time.time()) - 301)
    before = counts(db)
    response = post(client, payload, signature)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_signature"
    assert counts(db) == before
    assert (
        client.application.test_client()
        .get(f"/pay/{declined_payment['payment_id']}/status")
        .json["status"]
        == "pending"
    )


def test_signature_covers_the_raw_body(client, db, declined_payment):
    payload = event(
        "payment_intent.succeeded",
        intent(declined_payment["stripe_payment_intent_id"], "succeeded"),
    )
    signature = signed(payload)
    reformatted = json.dumps(json.loads(payload)).encode()  # same JSON, other bytes
    before = counts(db)
    assert post(client, reformatted, signature).status_code == 400
    assert counts(db) == before


@pytest.fixture
def paid_at_stripe_only(api):
    """A payment Stripe charged (3-D Secure finished in the mock) that pay_api still holds
    pending: only an event or a refresh can tell it."""
    payment = api.create_payment()
    answer = api.pay(payment["payment_id"], "4000002760003184")
    assert answer["status"] == "requires_action"
    api.authenticate(answer["client_secret"], success=True)
    state = api.get_payment(payment["payment_id"])
    assert state["status"] == "pending"
    return state


def stripe_api(api, method: str, path: str, **data) -> dict:
    """A call to localstripe with the secret key (what Stripe's Dashboard or API would do)."""
    response = httpx.request(
        method, f"{api.localstripe}{path}", data=data or None, auth=("sk_test_offline", "")
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_duplicate_event_is_one_transition_and_one_outbox_row(client, db, paid_at_stripe_only):
    payment_id = paid_at_stripe_only["payment_id"]
    payload = event(
        "payment_intent.succeeded",
        intent(paid_at_stripe_only["stripe_payment_intent_id"], "succeeded"),
    )
    events_before, outbox_before = counts(db)

    first = post(client, payload, signed(payload))
    assert first.status_code == 200
    assert first.json["duplicate"] is False
    second = post(client, payload, signed(payload))
    assert second.status_code == 200
    assert second.json["duplicate"] is True

    assert counts(db) == (events_before + 1, outbox_before + 1)
    with db.transaction() as session:
        rows = session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(1)
        ).all()
    assert rows[0].payload["payment_id"] == payment_id
    assert rows[0].payload["status"] == "succeeded"


def test_a_late_event_never_moves_a_payment_backwards(client, db, api):
    payment = api.create_payment()
    api.pay(payment["payment_id"], "4242424242424242")
    intent_id = api.get_payment(payment["payment_id"])["stripe_payment_intent_id"]
    late = event(
        "payment_intent.payment_failed",
        intent(
            intent_id, "requires_payment_method", error={"code": "card_declined", "message": "x"}
        ),
    )
    _, outbox_before = counts(db)
    assert post(client, late, signed(late)).status_code == 200
    state = api.get_payment(payment["payment_id"])
    assert state["status"] == "succeeded"
    assert state["failure_code"] is None
    assert counts(db)[1] == outbox_before


def test_stale_failure_of_an_earlier_card_does_not_override_the_current_attempt(client, db, api):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    answer = api.pay(payment_id, "4000002760003184")  # current attempt waits for 3-D Secure
    assert answer["status"] == "requires_action"
    intent_id = api.get_payment(payment_id)["stripe_payment_intent_id"]
    stale = event(
        "payment_intent.payment_failed",
        intent(
            intent_id,
            "requires_payment_method",
            pm="pm_an_earlier_card",
            error={"code": "card_declined", "message": "Your card was declined."},
        ),
    )
    assert post(client, stale, signed(stale)).status_code == 200
    assert api.get_payment(payment_id)["failure_code"] is None


def test_canceled_event_closes_the_payment(client, api, declined_payment):
    stripe_api(
        api, "POST", f"/v1/payment_intents/{declined_payment['stripe_payment_intent_id']}/cancel"
    )
    payload = event(
        "payment_intent.canceled",
        intent(declined_payment["stripe_payment_intent_id"], "canceled"),
    )
    assert post(client, payload, signed(payload)).status_code == 200
    assert api.get_payment(declined_payment["payment_id"])["status"] == "canceled"


def test_unknown_intent_and_unhandled_types_are_acknowledged(client, db):
    for payload in (
        event("payment_intent.succeeded", intent("pi_not_ours", "succeeded")),
        event("customer.created", {"id": "cus_x", "object": "customer"}),
    ):
        assert post(client, payload, signed(payload)).status_code == 200


def test_localstripe_webhooks_are_accepted(database_url, localstripe, billing, api, db):
    """A real localstripe event, signed by localstripe, reaches a live pay_api and applies."""
    port = free_port()
    settings = make_settings(
        database_url,
        localstripe,
        billing.url,
        STRIPE_REGISTER_WEBHOOK=True,
        PAY_API_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    live_app = create_app(settings)
    # create_app registers in the background; once more here so the order is certain.
    assert live_app.extensions["pay_api.gateway"].register_localstripe_webhook()
    server = make_server("127.0.0.1", port, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        payment = api.create_payment()
        answer = api.pay(payment["payment_id"], "4000002760003184")
        intent_id = api.get_payment(payment["payment_id"])["stripe_payment_intent_id"]
        api.authenticate(answer["client_secret"], success=True)  # no /sync: only the webhook tells

        def paid():
            return api.get_payment(payment["payment_id"])["status"] == "succeeded"

        wait_until(paid, timeout=20, what="localstripe's payment_intent.succeeded webhook")
        with db.transaction() as session:
            types = session.scalars(select(StripeEvent.type)).all()
        assert "payment_intent.succeeded" in types
        assert intent_id
    finally:
        server.shutdown()
        live_app.extensions["pay_api.db"].dispose()


def _outbox_for(db, payment_id) -> list[dict]:
    with db.transaction() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [r.payload for r in rows if r.payload["payment_id"] == str(payment_id)]


def own_snapshot(db, payment_id, status: str, **fields):
    """A snapshot of the payment's own intent (its id, amount, customer, metadata), as Stripe
    would answer it: for the state machine alone (localstripe cannot make these states)."""
    from pay_api.gateway import IntentState
    from pay_api.payments.models import Customer, Payment

    with db.transaction() as session:
        payment = session.get(Payment, uuid.UUID(str(payment_id)))
        customer = session.get(Customer, payment.user_id)
        obj = intent(
            payment.stripe_payment_intent_id,
            status,
            amount=payment.amount,
            currency=payment.currency,
            error=fields.pop("error", None),
            pm=fields.pop("pm", None),
        )
    obj.update(customer=customer.stripe_customer_id, metadata={"payment_id": str(payment_id)})
    return IntentState.from_stripe({**obj, **fields})


def apply_snapshot(db, payment_id, snapshot) -> bool:
    from pay_api.payments import state
    from pay_api.payments.models import Payment

    with db.transaction() as session:
        payment = session.get(Payment, uuid.UUID(str(payment_id)), with_for_update=True)
        return state.apply_intent(session, payment, snapshot)


def test_an_async_failure_after_processing_sends_the_payment_back_to_pending(
    client, db, api, declined_payment
):
    """processing → pending when Stripe's snapshot of the CURRENT attempt needs the user again;
    a late snapshot about an earlier attempt is still ignored."""
    from pay_api.payments.models import Payment

    payment_id = declined_payment["payment_id"]
    with db.transaction() as session:
        current_pm = session.get(Payment, uuid.UUID(payment_id)).payment_method_id
    assert current_pm
    assert apply_snapshot(db, payment_id, own_snapshot(db, payment_id, "processing", pm=current_pm))
    assert api.get_payment(payment_id)["status"] == "processing"
    # While money moves, the page does not start another attempt.
    assert api.charge(payment_id, api.save_card(payment_id, "4242424242424242")).json == {
        "status": "processing"
    }

    # An outdated failure of an earlier card changes nothing and tells billing nothing.
    outbox_before = len(_outbox_for(db, payment_id))
    stale = own_snapshot(
        db,
        payment_id,
        "requires_payment_method",
        pm="pm_an_earlier_card",
        error={"code": "card_declined", "message": "declined"},
    )
    assert not apply_snapshot(db, payment_id, stale)
    assert api.get_payment(payment_id)["status"] == "processing"
    assert len(_outbox_for(db, payment_id)) == outbox_before

    # The current attempt fails asynchronously (e.g. a bank debit returned): back to the user.
    failed = own_snapshot(
        db,
        payment_id,
        "requires_payment_method",
        error={
            "code": "insufficient_funds",
            "message": "Not enough money.",
            "payment_method": {"id": current_pm},
        },
    )
    assert apply_snapshot(db, payment_id, failed)
    state = api.get_payment(payment_id)
    assert (state["status"], state["failure_code"], state["failure_message"]) == (
        "pending",
        "insufficient_funds",
        "Not enough money.",
    )
    last = _outbox_for(db, payment_id)[-1]
    assert (last["status"], last["failure_code"]) == ("pending", "insufficient_funds")
    # Pending again, the payment can be paid with another card.
    assert api.pay(payment_id) == {"status": "succeeded"}


def test_requires_confirmation_of_the_current_attempt_also_reopens_a_processing_payment(
    client, db, declined_payment
):
    from pay_api.gateway import IntentState
    from pay_api.payments import state
    from pay_api.payments.models import Payment

    payment_id = uuid.UUID(declined_payment["payment_id"])

    def snapshot(status: str, pm: str | None) -> IntentState:
        return own_snapshot(db, payment_id, status, pm=pm)

    with db.transaction() as session:
        payment = session.get(Payment, payment_id, with_for_update=True)
        current_pm = payment.payment_method_id
        assert state.apply_intent(session, payment, snapshot("processing", current_pm))
        assert not state.apply_intent(session, payment, snapshot("requires_confirmation", "pm_old"))
        assert not state.apply_intent(session, payment, snapshot("requires_action", current_pm))
        assert payment.status == "processing"
        assert state.apply_intent(session, payment, snapshot("requires_confirmation", current_pm))
        assert payment.status == "pending"
