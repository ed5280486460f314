"""Renewals charged in batches (`POST /internal/v1/renewals/charges`), against a real localstripe:
each item registered if new and charged as its attempt on the payment's ONE PaymentIntent, with
an answer of its own; one item's trouble never touches another; bad batches change nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from pay_api.outbox import OutboxMessage
from pay_api.payments.models import Payment
from sqlalchemy import func, select

from .conftest import auth
from .test_renewal_charges import charge_off_session, intents_of, subscribed_user

CHARGES = "/internal/v1/renewals/charges"


def item(user_id, *, attempt: int = 1, payment_id=None, amount: int = 999, **extra) -> dict:
    return {
        "payment_id": str(payment_id or uuid.uuid4()),
        "user_id": str(user_id),
        "amount": amount,
        "currency": "usd",
        "description": "Premium (renewal)",
        "return_url": "http://cinema.test/account",
        "attempt": attempt,
        **extra,
    }


def charge_batch(api, items: list[dict]):
    return api.client.post(CHARGES, json={"charges": items}, headers=auth())


def results_by_payment(answer) -> dict[str, dict]:
    assert answer.status_code == 200, answer.json
    return {r["payment_id"]: r for r in answer.json["results"]}


def test_a_batch_charges_each_renewal_on_its_own_and_answers_each(api, db):
    paying = subscribed_user(api, "4242424242424242")
    declining = subscribed_user(api, "4000000000000341")  # saves fine, declines at a charge
    needs_3ds = subscribed_user(api, "4000002760003184")
    no_card = uuid.uuid4()
    registered = api.create_payment(user_id=paying, amount=999)["payment_id"]  # known already
    conflicting = api.create_payment(user_id=paying, amount=500)["payment_id"]
    items = [
        item(paying),  # registered by the batch itself
        item(paying, payment_id=registered),
        item(declining),
        item(needs_3ds),
        item(no_card),
        item(paying, payment_id=conflicting),  # 999 asked, 500 registered
    ]
    answer = charge_batch(api, items)
    results = results_by_payment(answer)
    assert [r["payment_id"] for r in answer.json["results"]] == [i["payment_id"] for i in items]

    new, known, declined, waiting, none, conflict = (results[i["payment_id"]] for i in items)
    assert new["payment"]["status"] == "succeeded"
    assert known["payment"]["status"] == "succeeded"
    assert declined["payment"]["status"] == "pending"
    assert declined["payment"]["failure_code"] == "card_declined"
    assert waiting["payment"]["status"] == "pending"
    assert waiting["payment"]["failure_code"] == "authentication_required"
    assert none["error"]["status"] == 409 and none["error"]["code"] == "no_saved_card"
    assert conflict["error"]["status"] == 409 and conflict["error"]["code"] == "payment_conflict"

    # One intent per charged payment, one charge each; nothing for the refused ones.
    for charged in (new, known, declined, waiting):
        (intent,) = intents_of(api, charged["payment_id"])
        assert intent["id"] == charged["payment"]["stripe_payment_intent_id"]
    assert [
        c["status"] for c in api.stripe_charges(new["payment"]["stripe_payment_intent_id"])
    ] == ["succeeded"]
    assert intents_of(api, none["payment_id"]) == []
    assert intents_of(api, conflicting) == []
    with db.transaction() as session:
        assert session.get(Payment, uuid.UUID(conflicting)).amount == 500  # untouched
        row = session.get(Payment, uuid.UUID(new["payment_id"]))
        assert (row.confirm_attempts, row.off_session_attempt) == (1, 1)

    # The same batch again (billing asking after a lost answer): nothing new at Stripe.
    again = results_by_payment(charge_batch(api, items))
    assert {k: v.get("payment", v.get("error")) for k, v in again.items()} == {
        k: v.get("payment", v.get("error")) for k, v in results.items()
    }
    with db.transaction() as session:
        attempts = {
            str(p.id): p.confirm_attempts
            for p in session.scalars(
                select(Payment).where(Payment.id.in_([uuid.UUID(i["payment_id"]) for i in items]))
            )
        }
    assert attempts[new["payment_id"]] == 1 and attempts[declined["payment_id"]] == 1
    assert attempts[waiting["payment_id"]] == 1

    # The next attempt: the declined card is confirmed again on the same intent; the payment
    # waiting for its cardholder is not (only the emailed link finishes it); paid ones stay paid.
    retry = results_by_payment(charge_batch(api, [dict(i, attempt=2) for i in items[:4]]))
    assert retry[declined["payment_id"]]["payment"]["failure_code"] == "card_declined"
    intent = declined["payment"]["stripe_payment_intent_id"]
    assert sorted(c["status"] for c in api.stripe_charges(intent)) == ["failed", "failed"]
    assert retry[waiting["payment_id"]]["payment"]["status"] == "pending"
    assert retry[new["payment_id"]]["payment"]["status"] == "succeeded"
    with db.transaction() as session:
        assert session.get(Payment, uuid.UUID(waiting["payment_id"])).confirm_attempts == 1
        assert session.get(Payment, uuid.UUID(new["payment_id"])).confirm_attempts == 1


def test_a_batch_and_the_single_call_share_the_attempt_numbers(api):
    user_id = subscribed_user(api, "4000000000000341")
    payment_id = api.create_payment(user_id=user_id, amount=999)["payment_id"]
    assert charge_off_session(api, payment_id, 1).json["failure_code"] == "card_declined"
    # Attempt 1 again in a batch: already confirmed, not sent to Stripe again.
    results = results_by_payment(charge_batch(api, [item(user_id, payment_id=payment_id)]))
    assert results[payment_id]["payment"]["failure_code"] == "card_declined"
    (intent,) = intents_of(api, payment_id)
    assert [c["status"] for c in api.stripe_charges(intent["id"])] == ["failed"]


def test_a_full_batch_beyond_the_single_request_body_limit_is_read(api):
    """100 renewals are bigger than the API's usual body limit (16 KB): the batch has its own."""
    items = [item(uuid.uuid4(), description="Premium renewal " + "x" * 200) for _ in range(100)]
    assert len(json.dumps({"charges": items})) > 16384
    results = results_by_payment(charge_batch(api, items))
    assert len(results) == 100
    assert {r["error"]["code"] for r in results.values()} == {"no_saved_card"}


def _bad_batches() -> list:
    user = str(uuid.uuid4())
    one = item(user)
    return [
        {},
        {"charges": []},
        {"charges": [item(user) for _ in range(101)]},
        {"charges": [one, dict(one)]},  # the same payment twice
        {"charges": [dict(one, attempt=0)]},
        {"charges": [dict(one, attempt="1")]},
        {"charges": [dict(one, amount=0)]},
        {"charges": [{k: v for k, v in one.items() if k != "user_id"}]},
        {"charges": one},
        {"charges": [item(user), "not an object"]},
    ]


@pytest.mark.parametrize("body", _bad_batches())
def test_a_bad_batch_is_refused_whole_and_changes_nothing(api, db, body):
    with db.transaction() as session:
        before = session.scalar(select(func.count()).select_from(Payment))
    answer = api.client.post(CHARGES, json=body, headers=auth())
    assert answer.status_code == 422 and answer.json["code"] == "validation_error", answer.json
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == before


def test_a_batch_needs_billings_token(api):
    body = {"charges": [item(uuid.uuid4())]}
    assert api.client.post(CHARGES, json=body).status_code == 401
    other = api.client.post(CHARGES, json=body, headers=auth(iss="admin"))
    assert other.status_code in (401, 403)


def test_the_events_of_answered_renewals_wait_while_a_single_charges_go_at_once(api, db):
    """Billing applies a batch's answers itself: their events (the safety net for an answer it
    lost) wait PAY_API_OUTBOX_ANSWERED_DELAY (30 s) and are not offered for immediate delivery;
    the single call's event goes at once, as before."""
    offered: list[int] = []
    db.after_commit.append(offered.extend)
    try:
        batch_user = subscribed_user(api, "4242424242424242")
        batched = item(batch_user)
        results = results_by_payment(charge_batch(api, [batched]))
        assert results[batched["payment_id"]]["payment"]["status"] == "succeeded"
        single_user = subscribed_user(api, "4242424242424242")
        single = api.create_payment(user_id=single_user, amount=999)["payment_id"]
        assert charge_off_session(api, single, 1).json["status"] == "succeeded"
    finally:
        db.after_commit.remove(offered.extend)

    def events_of(payment_id: str) -> list[OutboxMessage]:
        with db.transaction() as session:
            return list(
                session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.payload["payment_id"].astext == payment_id
                    )
                )
            )

    (deferred,) = events_of(batched["payment_id"])
    assert deferred.payload["status"] == "succeeded"
    assert deferred.next_attempt_at - deferred.created_at >= timedelta(seconds=29)
    assert deferred.id not in offered
    (at_once,) = [m for m in events_of(single) if m.payload["status"] == "succeeded"]
    assert at_once.next_attempt_at - at_once.created_at < timedelta(seconds=1)
    assert at_once.id in offered
