"""Refunds: stored first, capped by pay_api (localstripe does not cap), made once at Stripe."""

import uuid

import pytest
from pay_api.refunds.models import Refund

from .conftest import auth


@pytest.fixture
def paid(api):
    payment = api.create_payment(amount=1000, currency="usd")
    assert api.pay(payment["payment_id"]) == {"status": "succeeded"}
    return api.get_payment(payment["payment_id"])


def refund(client, payment_id, amount, refund_id=None, reason="requested_by_customer"):
    body = {
        "refund_id": str(refund_id or uuid.uuid4()),
        "payment_id": str(payment_id),
        "amount": amount,
        "reason": reason,
    }
    return client.post("/internal/v1/refunds", json=body, headers=auth())


def test_refund_is_made_once_and_idempotent_by_refund_id(client, api, paid):
    refund_id = uuid.uuid4()
    first = refund(client, paid["payment_id"], 400, refund_id)
    assert first.status_code == 201
    assert first.json["status"] == "succeeded"
    assert first.json["amount"] == 400
    assert first.json["stripe_refund_id"].startswith("re_")

    again = refund(client, paid["payment_id"], 400, refund_id)
    assert again.status_code == 201
    assert again.json == first.json

    at_stripe = api.stripe_refunds(paid["stripe_payment_intent_id"])
    assert [r["amount"] for r in at_stripe] == [400]
    assert at_stripe[0]["metadata"]["refund_id"] == str(refund_id)
    assert api.get_payment(paid["payment_id"])["amount_refunded"] == 400

    fetched = client.get(f"/internal/v1/refunds/{refund_id}?refresh=1", headers=auth())
    assert fetched.status_code == 200
    assert fetched.json["status"] == "succeeded"


def test_refunds_are_capped_at_the_charged_amount(client, api, paid):
    assert refund(client, paid["payment_id"], 600).status_code == 201
    too_much = refund(client, paid["payment_id"], 401)
    assert too_much.status_code == 409
    assert too_much.json["code"] == "refund_exceeds_remaining"
    assert refund(client, paid["payment_id"], 400).status_code == 201
    assert refund(client, paid["payment_id"], 1).json["code"] == "refund_exceeds_remaining"

    assert api.get_payment(paid["payment_id"])["amount_refunded"] == 1000
    at_stripe = api.stripe_refunds(paid["stripe_payment_intent_id"])
    assert sorted(r["amount"] for r in at_stripe) == [400, 600]


def test_same_refund_id_with_another_amount_is_a_conflict(client, paid):
    refund_id = uuid.uuid4()
    assert refund(client, paid["payment_id"], 100, refund_id).status_code == 201
    conflict = refund(client, paid["payment_id"], 200, refund_id)
    assert conflict.status_code == 409
    assert conflict.json["code"] == "refund_conflict"


def test_unpaid_payment_is_not_refundable(client, api):
    payment = api.create_payment()
    response = refund(client, payment["payment_id"], 100)
    assert response.status_code == 409
    assert response.json["code"] == "payment_not_refundable"


def test_bad_refund_body_changes_nothing(client, db, paid):
    refund_id = uuid.uuid4()
    response = refund(client, paid["payment_id"], -5, refund_id)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    with db.transaction() as session:
        assert session.get(Refund, refund_id) is None


def test_after_a_crash_the_refund_made_at_stripe_is_found_not_made_twice(
    app, client, db, api, paid
):
    """pay_api stored the refund, Stripe made it, and the answer was lost (a crash)."""
    refund_id = uuid.uuid4()
    with db.transaction() as session:
        session.add(
            Refund(
                id=refund_id,
                payment_id=uuid.UUID(paid["payment_id"]),
                amount=300,
                currency="usd",
                reason="crash test",
                status="pending",
            )
        )
    app.extensions["pay_api.gateway"].create_refund(
        refund_id=str(refund_id),
        payment_intent_id=paid["stripe_payment_intent_id"],
        amount=300,
        reason="crash test",
    )

    response = client.get(f"/internal/v1/refunds/{refund_id}?refresh=1", headers=auth())
    assert response.status_code == 200
    assert response.json["status"] == "succeeded"
    at_stripe = api.stripe_refunds(paid["stripe_payment_intent_id"])
    assert len(at_stripe) == 1
    assert response.json["stripe_refund_id"] == at_stripe[0]["id"]

    # billing retrying its POST gets the same refund, still one at Stripe
    again = refund(client, paid["payment_id"], 300, refund_id, reason="crash test")
    assert again.status_code == 201
    assert again.json["stripe_refund_id"] == at_stripe[0]["id"]
    assert len(api.stripe_refunds(paid["stripe_payment_intent_id"])) == 1


def test_a_create_that_may_still_be_in_flight_is_waited_out_not_repeated(
    app, client, db, api, paid
):
    """A process started creating the refund at Stripe and died; its request may still arrive
    (localstripe would not deduplicate it). Within the in-flight window nobody creates again;
    a refund that lands meanwhile is found; after the window a missing one is created once."""
    from datetime import timedelta

    from pay_api.db import utcnow

    gateway = app.extensions["pay_api.gateway"]
    intent_id = paid["stripe_payment_intent_id"]

    def stored(refund_id, started_ago):
        with db.transaction() as session:
            session.add(
                Refund(
                    id=refund_id,
                    payment_id=uuid.UUID(paid["payment_id"]),
                    amount=200,
                    currency="usd",
                    reason="in flight",
                    status="pending",
                    stripe_create_started_at=utcnow() - timedelta(seconds=started_ago),
                )
            )

    # 1. started 2 s ago, nothing at Stripe yet: left pending, nothing created
    waiting = uuid.uuid4()
    stored(waiting, started_ago=2)
    answer = client.get(f"/internal/v1/refunds/{waiting}?refresh=1", headers=auth())
    assert answer.status_code == 200 and answer.json["status"] == "pending"
    assert api.stripe_refunds(intent_id) == []

    # 2. the dead process's request lands: found by its metadata, not made twice
    gateway.create_refund(
        refund_id=str(waiting), payment_intent_id=intent_id, amount=200, reason="in flight"
    )
    answer = client.get(f"/internal/v1/refunds/{waiting}?refresh=1", headers=auth())
    assert answer.json["status"] == "succeeded"
    assert len(api.stripe_refunds(intent_id)) == 1

    # 3. started long ago and never arrived: created now, once
    lost = uuid.uuid4()
    stored(lost, started_ago=gateway.in_flight_seconds + 1)
    answer = client.get(f"/internal/v1/refunds/{lost}?refresh=1", headers=auth())
    assert answer.json["status"] == "succeeded"
    assert len(api.stripe_refunds(intent_id)) == 2
    again = client.get(f"/internal/v1/refunds/{lost}?refresh=1", headers=auth())
    assert again.json["stripe_refund_id"] == answer.json["stripe_refund_id"]
    assert len(api.stripe_refunds(intent_id)) == 2


def test_unknown_refund_is_404(client):
    response = client.get(f"/internal/v1/refunds/{uuid.uuid4()}", headers=auth())
    assert response.status_code == 404
    assert response.json["code"] == "refund_not_found"


def test_refund_events_from_real_stripe_apply(client, db, api, paid):
    """refund.updated / refund.failed are sent by real Stripe (not by localstripe): here Stripe's
    refund is made and failed at localstripe with the secret key, then the event is posted."""
    from .test_webhooks import event, post, signed, stripe_api

    refund_id = uuid.uuid4()
    with db.transaction() as session:
        session.add(
            Refund(
                id=refund_id,
                payment_id=uuid.UUID(paid["payment_id"]),
                amount=250,
                currency="usd",
                status="pending",
            )
        )
    at_stripe = stripe_api(
        api,
        "POST",
        "/v1/refunds",
        payment_intent=paid["stripe_payment_intent_id"],
        amount=250,
        **{"metadata[refund_id]": str(refund_id)},
    )
    stripe_api(
        api,
        "POST",
        f"/v1/refunds/{at_stripe['id']}",
        status="failed",  # localstripe's refunds have no failure_reason to set
    )
    obj = {
        "id": at_stripe["id"],
        "object": "refund",
        "amount": 250,
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "payment_intent": paid["stripe_payment_intent_id"],
        "metadata": {"refund_id": str(refund_id)},
    }
    payload = event("refund.failed", obj)
    assert post(client, payload, signed(payload)).status_code == 200
    fetched = client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json
    assert fetched["status"] == "failed"
    assert fetched["stripe_refund_id"] == obj["id"]
    # a late "pending" update never moves it back
    late = event("refund.updated", {**obj, "status": "pending"})
    assert post(client, late, signed(late)).status_code == 200
    assert (
        client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json["status"] == "failed"
    )


def test_a_succeeded_refund_that_fails_later_reaches_billing(client, db, api, paid):
    """Real Stripe: the bank returns a refund after it succeeded (`refund.updated`, failed)."""
    from .test_webhooks import _outbox_for, event, post, signed, stripe_api

    payment_id = paid["payment_id"]
    refund_id = uuid.uuid4()
    made = refund(client, payment_id, 400, refund_id).json
    assert made["status"] == "succeeded"
    # Refunded 300 more in Stripe's Dashboard: Stripe's total is 700 (the event's body says
    # more; only Stripe's own charge counts).
    stripe_api(
        api, "POST", "/v1/refunds", payment_intent=paid["stripe_payment_intent_id"], amount=300
    )
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": paid["stripe_payment_intent_id"],
        "amount": 1000,
        "amount_refunded": 1000,
    }
    outside = event("charge.refunded", charge)
    assert post(client, outside, signed(outside)).status_code == 200
    assert api.get_payment(payment_id)["amount_refunded"] == 700
    stripe_api(
        api,
        "POST",
        f"/v1/refunds/{made['stripe_refund_id']}",
        status="failed",  # localstripe's refunds have no failure_reason to set
    )

    obj = {
        "id": made["stripe_refund_id"],
        "object": "refund",
        "amount": 400,
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "payment_intent": paid["stripe_payment_intent_id"],
        "metadata": {"refund_id": str(refund_id)},
    }
    failed = event("refund.updated", obj)
    assert post(client, failed, signed(failed)).status_code == 200
    fetched = client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json
    assert fetched["status"] == "failed"
    # Only our 400 came back: the 300 refunded outside is still refunded.
    assert api.get_payment(payment_id)["amount_refunded"] == 300
    last = _outbox_for(db, payment_id)[-1]
    assert {k: last[k] for k in ("object", "refund_id", "status", "amount", "failure_code")} == {
        "object": "refund",
        "refund_id": str(refund_id),
        "status": "failed",
        "amount": 400,
        "failure_code": None,  # Stripe's failure_reason (localstripe has none)
    }
    assert last["amount_refunded"] == 300

    # Repeated or late news changes nothing more: failed is final.
    outbox_before = len(_outbox_for(db, payment_id))
    for status in ("failed", "succeeded", "pending"):
        late = event("refund.updated", {**obj, "status": status})
        assert post(client, late, signed(late)).status_code == 200
    assert (
        fetched["status"]
        == client.get(f"/internal/v1/refunds/{refund_id}", headers=auth()).json["status"]
    )
    assert len(_outbox_for(db, payment_id)) == outbox_before
    assert api.get_payment(payment_id)["amount_refunded"] == 300


def test_the_cap_counts_refunds_made_outside_and_our_open_ones(client, db, api, paid):
    """Stripe's total (with a Dashboard refund) plus our pending refunds, not the larger of the two."""
    from .test_webhooks import event, post, signed, stripe_api

    payment_id = paid["payment_id"]
    stripe_api(
        api, "POST", "/v1/refunds", payment_intent=paid["stripe_payment_intent_id"], amount=600
    )
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": paid["stripe_payment_intent_id"],
        "amount": 1000,
        "amount_refunded": 600,
    }
    outside = event("charge.refunded", charge)  # 600 refunded in the Dashboard
    assert post(client, outside, signed(outside)).status_code == 200
    with db.transaction() as session:  # ours, on its way (not at Stripe yet)
        session.add(
            Refund(
                id=uuid.uuid4(),
                payment_id=uuid.UUID(payment_id),
                amount=200,
                currency="usd",
                status="pending",
            )
        )
    too_much = refund(client, payment_id, 201)
    assert too_much.status_code == 409
    assert too_much.json["code"] == "refund_exceeds_remaining"
    assert too_much.json["details"] == {"remaining": 200, "currency": "usd"}
    assert len(api.stripe_refunds(paid["stripe_payment_intent_id"])) == 1  # the Dashboard's
    assert refund(client, payment_id, 200).status_code == 201
    assert api.get_payment(payment_id)["amount_refunded"] == 800  # 600 outside + our 200
    assert refund(client, payment_id, 1).json["code"] == "refund_exceeds_remaining"


def test_our_refund_whose_answer_was_lost_is_not_taken_for_an_outside_one(
    app, client, db, api, paid
):
    """Stripe made our refund but its answer was lost; Stripe's total (charge.refunded) arrives
    before we find it. It must not be booked as refunded outside pay_api, then counted again."""
    from datetime import timedelta

    from pay_api.db import utcnow

    from .test_webhooks import event, post, signed

    gateway = app.extensions["pay_api.gateway"]
    payment_id, intent_id = paid["payment_id"], paid["stripe_payment_intent_id"]
    refund_id = uuid.uuid4()
    with db.transaction() as session:
        session.add(
            Refund(
                id=refund_id,
                payment_id=uuid.UUID(payment_id),
                amount=300,
                currency="usd",
                reason="lost answer",
                status="pending",
                stripe_create_started_at=utcnow()
                - timedelta(seconds=gateway.in_flight_seconds + 1),
            )
        )
    gateway.create_refund(
        refund_id=str(refund_id), payment_intent_id=intent_id, amount=300, reason="lost answer"
    )
    total = event(
        "charge.refunded",
        {
            "id": "ch_x",
            "object": "charge",
            "payment_intent": intent_id,
            "amount": 1000,
            "amount_refunded": 300,
        },
    )
    assert post(client, total, signed(total)).status_code == 200
    assert api.get_payment(payment_id)["amount_refunded"] == 0  # ours, not yet confirmed

    found = client.get(f"/internal/v1/refunds/{refund_id}?refresh=1", headers=auth()).json
    assert found["status"] == "succeeded"
    assert len(api.stripe_refunds(intent_id)) == 1
    assert api.get_payment(payment_id)["amount_refunded"] == 300
