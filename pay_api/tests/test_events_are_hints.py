"""A correctly signed event is a hint: pay_api fetches the object from Stripe (localstripe, with
the secret key), checks it is our payment's, and applies only that. Every event here is forged
and signed with the webhook secret, as a leaked `.env` would let anyone do."""

import uuid

import pytest
from pay_api.outbox import OutboxMessage
from pay_api.payments.models import Payment
from pay_api.refunds.models import Refund
from sqlalchemy import func, select

from .conftest import auth
from .test_webhooks import event, intent, post, signed, stripe_api


def outbox_count(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage))


def flags(client, **token) -> list[dict]:
    response = client.get("/internal/v1/flags?limit=500", headers=auth(iss="admin", **token))
    assert response.status_code == 200, response.json
    return response.json["items"]


def flags_for(client, stripe_object_id: str) -> list[dict]:
    return [f for f in flags(client) if f["stripe_object_id"] == stripe_object_id]


def send(client, event_type: str, obj: dict):
    payload = event(event_type, obj)
    response = post(client, payload, signed(payload))
    assert response.status_code == 200, response.json
    return response


@pytest.fixture
def declined(api):
    """Stripe holds this payment unpaid: its intent was declined (card 0341)."""
    payment = api.create_payment(amount=1299)
    assert api.pay(payment["payment_id"], "4000000000000341")["status"] == "declined"
    return api.get_payment(payment["payment_id"])


@pytest.fixture
def paid(api):
    payment = api.create_payment(amount=1000)
    assert api.pay(payment["payment_id"]) == {"status": "succeeded"}
    return api.get_payment(payment["payment_id"])


@pytest.mark.parametrize(
    "event_type", ["payment_intent.succeeded", "payment_intent.processing", "charge.succeeded"]
)
def test_a_forged_success_moves_nothing_stripe_did_not_charge(
    client, db, api, declined, event_type
):
    intent_id = declined["stripe_payment_intent_id"]
    before = outbox_count(db)
    forged = intent(intent_id, "succeeded", amount=1299)
    if event_type.startswith("charge."):
        forged = {"id": "ch_forged", "object": "charge", "payment_intent": intent_id, "paid": True}
    send(client, event_type, forged)
    after = api.get_payment(declined["payment_id"])
    assert after["status"] == "pending"
    assert after["failure_code"] == declined["failure_code"]
    assert outbox_count(db) == before  # billing is told nothing
    assert client.get(f"/pay/{declined['payment_id']}/status").json["status"] == "pending"


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("amount", {"amount": "1"}),
        ("currency", {"currency": "eur"}),
        ("customer", {"customer": "cus_somebody_else"}),
        ("metadata.payment_id", {"metadata[payment_id]": str(uuid.uuid4())}),
    ],
)
def test_stripe_object_that_is_not_our_payment_changes_nothing_and_is_flagged(
    client, db, api, field, changes
):
    """Stripe charged an intent whose amount/currency/customer/metadata is not our payment's:
    nothing is applied — not by the event, not by the reconciler's refresh — and a manager sees
    a flag."""
    payment = api.create_payment(amount=1299)
    answer = api.pay(payment["payment_id"], "4000002760003184")  # 3-D Secure: not charged yet
    intent_id = api.get_payment(payment["payment_id"])["stripe_payment_intent_id"]
    stripe_api(api, "POST", f"/v1/payment_intents/{intent_id}", **changes)
    api.authenticate(answer["client_secret"], success=True)  # now Stripe charged that intent
    before = outbox_count(db)

    send(client, "payment_intent.succeeded", intent(intent_id, "succeeded", amount=1299))
    assert api.get_payment(payment["payment_id"], refresh=True)["status"] == "pending"
    assert outbox_count(db) == before

    [flag] = flags_for(client, intent_id)
    assert flag["kind"] == "object_mismatch"
    assert flag["payment_id"] == payment["payment_id"]
    assert list(flag["details"]) == [field]
    assert flag["occurrences"] == 2  # the event, then the refresh
    assert flag["source"] == "refresh"  # the last one to see it


def test_a_forged_charge_refunded_on_an_unpaid_payment_books_nothing(client, db, api, declined):
    before = outbox_count(db)
    charge = {
        "id": "ch_forged",
        "object": "charge",
        "payment_intent": declined["stripe_payment_intent_id"],
        "amount": 1299,
        "amount_refunded": 1299,
        "refunded": True,
    }
    send(client, "charge.refunded", charge)
    after = api.get_payment(declined["payment_id"])
    assert (after["status"], after["amount_refunded"], after["refunded_outside"]) == (
        "pending",
        0,
        0,
    )
    assert outbox_count(db) == before
    # Paid afterwards, the payment is whole: nothing was booked against it.
    assert api.pay(declined["payment_id"]) == {"status": "succeeded"}
    assert api.get_payment(declined["payment_id"], refresh=True)["amount_refunded"] == 0


def test_a_forged_charge_refunded_on_a_paid_payment_books_only_stripes_refunds(
    client, db, api, paid
):
    charge = {
        "id": "ch_forged",
        "object": "charge",
        "payment_intent": paid["stripe_payment_intent_id"],
        "amount_refunded": 1000,
    }
    send(client, "charge.refunded", charge)
    assert api.get_payment(paid["payment_id"])["amount_refunded"] == 0
    # A real Dashboard refund of 250: the same lie now books exactly Stripe's 250.
    stripe_api(
        api, "POST", "/v1/refunds", payment_intent=paid["stripe_payment_intent_id"], amount=250
    )
    send(client, "charge.refunded", charge)
    after = api.get_payment(paid["payment_id"])
    assert (after["amount_refunded"], after["refunded_outside"]) == (250, 250)


def _pending_refund(db, payment_id, amount=300) -> uuid.UUID:
    refund_id = uuid.uuid4()
    with db.transaction() as session:
        session.add(
            Refund(
                id=refund_id,
                payment_id=uuid.UUID(payment_id),
                amount=amount,
                currency="usd",
                status="pending",
            )
        )
    return refund_id


def test_a_forged_refund_event_for_a_refund_stripe_does_not_have_is_flagged(client, db, api, paid):
    refund_id = _pending_refund(db, paid["payment_id"])
    forged = {
        "id": "re_forged" + uuid.uuid4().hex[:8],
        "object": "refund",
        "amount": 300,
        "status": "succeeded",
        "payment_intent": paid["stripe_payment_intent_id"],
        "metadata": {"refund_id": str(refund_id)},
    }
    before = outbox_count(db)
    send(client, "refund.updated", forged)
    fetched = client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json
    assert (fetched["status"], fetched["stripe_refund_id"]) == ("pending", None)
    assert api.get_payment(paid["payment_id"])["amount_refunded"] == 0
    assert outbox_count(db) == before
    [flag] = flags_for(client, forged["id"])
    assert flag["kind"] == "object_missing"


def test_a_refund_of_another_payment_naming_ours_changes_nothing(client, db, api, paid):
    """Stripe's refund carries our refund id in its metadata but refunds another intent (and
    another amount): ours stays pending, the payment's total untouched, a manager is told."""
    refund_id = _pending_refund(db, paid["payment_id"])
    other = api.create_payment(amount=1000)
    assert api.pay(other["payment_id"]) == {"status": "succeeded"}
    other_intent = api.get_payment(other["payment_id"])["stripe_payment_intent_id"]
    at_stripe = stripe_api(
        api,
        "POST",
        "/v1/refunds",
        payment_intent=other_intent,
        amount=500,
        **{"metadata[refund_id]": str(refund_id)},
    )
    send(
        client,
        "refund.updated",
        {
            "id": at_stripe["id"],
            "object": "refund",
            "payment_intent": paid["stripe_payment_intent_id"],
        },
    )
    fetched = client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json
    assert (fetched["status"], fetched["stripe_refund_id"]) == ("pending", None)
    assert api.get_payment(paid["payment_id"])["amount_refunded"] == 0
    [flag] = flags_for(client, at_stripe["id"])
    assert flag["kind"] == "object_mismatch"
    assert set(flag["details"]) == {"payment_intent", "amount"}


def test_the_reconciler_flags_a_success_stripe_never_charged(client, db, api, declined):
    """A payment held succeeded (e.g. by a forged event before events were verified) that Stripe
    never charged: the reconciler's refresh says so to a manager."""
    with db.transaction() as session:
        session.get(Payment, uuid.UUID(declined["payment_id"])).status = "succeeded"
    assert api.get_payment(declined["payment_id"], refresh=True)["status"] == "succeeded"
    [flag] = flags_for(client, declined["stripe_payment_intent_id"])
    assert flag["kind"] == "diverged_from_stripe"
    assert flag["details"] == {"ours": "succeeded", "stripe": "requires_payment_method"}


def test_flags_are_for_the_admin_and_billing_only(client):
    assert client.get("/internal/v1/flags", headers=auth(iss="billing")).status_code == 200
    assert client.get("/internal/v1/flags", headers=auth(iss="etl")).status_code == 403
    assert client.get("/internal/v1/flags").status_code == 401
    assert client.get("/internal/v1/flags?limit=0", headers=auth(iss="admin")).status_code == 422
