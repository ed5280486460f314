"""Renewals at pay_api, against a real localstripe: the saved card charged with the customer away,
on ONE PaymentIntent per renewal payment whatever the attempts, the emailed links (signed,
expiring) for authentication and for another card."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from pay_api.gateway import IntentState, LocalstripeDifferences
from pay_api.payments.models import Customer, Payment

from .conftest import PUBLISHABLE_KEY, SERVICE_SECRET, auth


def link_token(payment_id, use: str, *, ttl: int = 3600, secret: str = SERVICE_SECRET, **extra):
    now = int(time.time())
    claims = {
        "iss": "billing",
        "aud": "pay_api:link",
        "sub": str(payment_id),
        "use": use,
        "iat": now,
        "exp": now + ttl,
        **extra,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def charge_off_session(api, payment_id, attempt: int):
    return api.client.post(
        f"/internal/v1/payments/{payment_id}/charge-off-session",
        json={"attempt": attempt},
        headers=auth(),
    )


def intents_of(api, payment_id) -> list[dict]:
    page = httpx.get(
        f"{api.localstripe}/v1/payment_intents",
        params={"limit": 100},
        auth=("sk_test_offline", ""),
    ).json()
    assert not page["has_more"] or len(page["data"]) == 100
    return [i for i in page["data"] if (i.get("metadata") or {}).get("payment_id") == payment_id]


def subscribed_user(api, card: str) -> uuid.UUID:
    """A user who paid a first payment on the page with `card` (saved for later use)."""
    user_id = uuid.uuid4()
    first = api.create_payment(user_id=user_id)
    seti = api.save_card(first["payment_id"], card)
    api.charge(first["payment_id"], seti)
    return user_id


def test_a_renewal_charges_the_saved_card_once_on_one_intent(api, db):
    user_id = subscribed_user(api, "4242424242424242")
    renewal = api.create_payment(user_id=user_id, amount=999)
    payment_id = renewal["payment_id"]

    answer = charge_off_session(api, payment_id, 1)
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "succeeded"
    intent_id = answer.json["stripe_payment_intent_id"]

    # The same attempt again (billing's retry after a lost answer) confirms nothing new.
    again = charge_off_session(api, payment_id, 1)
    assert again.json["status"] == "succeeded"
    assert again.json["stripe_payment_intent_id"] == intent_id
    # A later attempt on a paid payment does nothing either.
    assert charge_off_session(api, payment_id, 2).json["status"] == "succeeded"

    (intent,) = intents_of(api, payment_id)
    assert intent["id"] == intent_id and intent["customer"]
    assert [c["status"] for c in api.stripe_charges(intent_id)] == ["succeeded"]
    with db.transaction() as session:
        row = session.get(Payment, uuid.UUID(payment_id))
        customer = session.get(Customer, user_id)
        assert row.confirm_attempts == 1 and row.off_session_attempt == 1
        assert row.payment_method_id == customer.default_payment_method_id


def test_declined_renewal_retries_then_a_new_card_pays_the_same_intent(api, db):
    user_id = subscribed_user(api, "4000000000000341")  # saves fine, declines at every charge
    renewal = api.create_payment(user_id=user_id, amount=999)
    payment_id = renewal["payment_id"]

    first = charge_off_session(api, payment_id, 1).json
    assert first["status"] == "pending" and first["failure_code"] == "card_declined"
    retry = charge_off_session(api, payment_id, 2).json
    assert retry["status"] == "pending" and retry["failure_code"] == "card_declined"
    assert retry["stripe_payment_intent_id"] == first["stripe_payment_intent_id"]

    # The emailed card-update link opens the payment page; the new card pays at once.
    token = link_token(payment_id, "card")
    page = api.client.get(f"/pay/{payment_id}/card?t={token}")
    assert page.status_code == 200 and b"Save card and pay" in page.data
    assert api.pay(payment_id, "4242424242424242") == {"status": "succeeded"}

    (intent,) = intents_of(api, payment_id)
    charges = api.stripe_charges(intent["id"])
    assert sorted(c["status"] for c in charges) == ["failed", "failed", "succeeded"]
    with db.transaction() as session:
        row = session.get(Payment, uuid.UUID(payment_id))
        customer = session.get(Customer, user_id)
        # The new card is the one the next renewals charge.
        assert customer.default_payment_method_id == row.payment_method_id
        assert row.confirm_attempts == 3


def test_a_renewal_needing_3ds_is_finished_through_the_emailed_link(api, db):
    user_id = subscribed_user(api, "4000002760003184")
    renewal = api.create_payment(user_id=user_id, amount=999)
    payment_id = renewal["payment_id"]

    answer = charge_off_session(api, payment_id, 1).json
    # Real Stripe declines `authentication_required`; localstripe's requires_action reads the same.
    assert answer["status"] == "pending"
    assert answer["failure_code"] == "authentication_required"
    # The automatic retry never confirms again while the customer is needed.
    assert charge_off_session(api, payment_id, 2).json["failure_code"] == "authentication_required"

    token = link_token(payment_id, "authenticate")
    page = api.client.get(f"/pay/{payment_id}/authenticate?t={token}")
    assert page.status_code == 200 and b"authenticate-button" in page.data
    details = api.client.post(f"/pay/{payment_id}/authenticate?t={token}", json={})
    assert details.status_code == 200, details.json
    assert details.json["publishable_key"] == PUBLISHABLE_KEY
    with db.transaction() as session:
        saved = session.get(Customer, user_id).default_payment_method_id
    assert details.json["payment_method_id"] == saved
    authenticated = api.authenticate(details.json["client_secret"], success=True)
    assert authenticated["status"] == "succeeded"
    assert api.sync(payment_id) == {"status": "succeeded"}

    (intent,) = intents_of(api, payment_id)
    assert [c["status"] for c in api.stripe_charges(intent["id"])] == ["succeeded"]


def test_a_renewal_waiting_for_the_cardholder_stays_so_when_stripe_is_asked_again(api, db):
    """The reconciler's refresh (or a webhook) reads the intent again: localstripe shows
    `requires_action` without a reason. The payment still waits for the cardholder, so the next
    automatic retry reads `authentication_required` too (not a soft decline to retry on a schedule)."""
    user_id = subscribed_user(api, "4000002760003184")
    payment_id = api.create_payment(user_id=user_id, amount=999)["payment_id"]
    assert charge_off_session(api, payment_id, 1).json["failure_code"] == "authentication_required"

    refreshed = api.client.get(f"/internal/v1/payments/{payment_id}?refresh=1", headers=auth())
    assert refreshed.status_code == 200, refreshed.json
    assert refreshed.json["status"] == "pending"
    assert refreshed.json["failure_code"] == "authentication_required"
    retry = charge_off_session(api, payment_id, 2).json
    assert (retry["status"], retry["failure_code"]) == ("pending", "authentication_required")

    # The cardholder authenticates on the emailed link: paid, and the reason is gone.
    token = link_token(payment_id, "authenticate")
    details = api.client.post(f"/pay/{payment_id}/authenticate?t={token}", json={}).json
    assert api.authenticate(details["client_secret"], success=True)["status"] == "succeeded"
    assert api.sync(payment_id) == {"status": "succeeded"}
    with db.transaction() as session:
        row = session.get(Payment, uuid.UUID(payment_id))
        assert (row.status, row.failure_code, row.confirm_attempts) == ("succeeded", None, 1)


@pytest.mark.parametrize(
    "make_token, code",
    [
        (lambda pid: None, "link_invalid"),
        (lambda pid: link_token(pid, "authenticate") + "x", "link_invalid"),
        (
            lambda pid: link_token(
                pid, "authenticate", secret="another-secret-0123456789abcdefghij"
            ),
            "link_invalid",
        ),
        (lambda pid: link_token(uuid.uuid4(), "authenticate"), "link_invalid"),
        (lambda pid: link_token(pid, "card"), "link_invalid"),
        (lambda pid: link_token(pid, "authenticate", ttl=-10), "link_expired"),
    ],
)
def test_a_bad_or_expired_link_opens_nothing(api, make_token, code):
    user_id = subscribed_user(api, "4000002760003184")
    payment_id = api.create_payment(user_id=user_id)["payment_id"]
    assert charge_off_session(api, payment_id, 1).json["failure_code"] == "authentication_required"
    token = make_token(payment_id)
    query = f"?t={token}" if token else ""
    page = api.client.get(f"/pay/{payment_id}/authenticate{query}")
    assert page.status_code == 403 and b"link-error" in page.data
    answer = api.client.post(f"/pay/{payment_id}/authenticate{query}", json={})
    assert answer.status_code == 403
    assert answer.json["code"] == code
    # A service token is not a link either.
    service = jwt.decode(auth()["Authorization"].split()[1], options={"verify_signature": False})
    assert service["aud"] != "pay_api:link"


def test_no_saved_card_is_refused_and_nothing_is_created(api):
    payment_id = api.create_payment()["payment_id"]
    answer = charge_off_session(api, payment_id, 1)
    assert answer.status_code == 409 and answer.json["code"] == "no_saved_card"
    assert api.get_payment(payment_id)["stripe_payment_intent_id"] is None
    assert intents_of(api, payment_id) == []


@pytest.mark.parametrize("body", [{}, {"attempt": 0}, {"attempt": "1"}, {"attempt": 10**6}])
def test_a_bad_attempt_is_refused(api, body):
    payment_id = api.create_payment()["payment_id"]
    answer = api.client.post(
        f"/internal/v1/payments/{payment_id}/charge-off-session", json=body, headers=auth()
    )
    assert answer.status_code == 422 and answer.json["code"] == "validation_error"


def _intent(status: str, failure_code=None) -> IntentState:
    return IntentState(
        id="pi_1",
        status=status,
        amount=100,
        currency="usd",
        client_secret="pi_1_secret_x",
        payment_method_id="pm_1",
        failure_code=failure_code,
        failure_message=None,
        cancellation_reason=None,
        amount_refunded=None,
        payment_id="p",
    )


def test_the_off_session_difference_lives_in_one_place():
    offline, real = LocalstripeDifferences(True), LocalstripeDifferences(False)
    # localstripe: requires_action after an off-session confirm reads as Stripe's decline code.
    assert offline.off_session_answer(_intent("requires_action")).failure_code == (
        "authentication_required"
    )
    # Real Stripe already says so; its answer passes unchanged.
    declined = _intent("requires_payment_method", "authentication_required")
    assert real.off_session_answer(declined) == declined
    assert "off_session" not in offline.params({"off_session": True, "payment_method": "pm"})
    assert real.params({"off_session": True})["off_session"] is True


def save_card_on_update_page(api, user_id, token: str, number: str) -> str:
    """What the card-update page does: its SetupIntent, Stripe.js's confirmCardSetup, save."""
    seti = api.save_card(None, number, setup_url=f"/cards/{user_id}/setup-intent?t={token}")
    saved = api.client.post(f"/cards/{user_id}/save?t={token}", json={"setup_intent_id": seti})
    assert saved.status_code == 200 and saved.json == {"status": "saved"}
    return seti


def test_the_card_update_page_changes_the_card_the_next_renewal_charges(api, db):
    user_id = subscribed_user(api, "4242424242424242")
    token = link_token(user_id, "card_update")
    page = api.client.get(f"/cards/{user_id}?t={token}")
    assert page.status_code == 200 and b"save-button" in page.data
    save_card_on_update_page(api, user_id, token, "4000000000000341")

    renewal = api.create_payment(user_id=user_id, amount=999)
    answer = charge_off_session(api, renewal["payment_id"], 1).json
    assert answer["status"] == "pending" and answer["failure_code"] == "card_declined"


def test_the_card_update_page_opens_only_for_its_user(api):
    user_id = subscribed_user(api, "4242424242424242")
    for token in (
        None,
        link_token(uuid.uuid4(), "card_update"),  # another user's link
        link_token(user_id, "card"),  # another use
        link_token(user_id, "card_update", ttl=-5),
    ):
        query = f"?t={token}" if token else ""
        assert api.client.get(f"/cards/{user_id}{query}").status_code == 403
        answer = api.client.post(f"/cards/{user_id}/setup-intent{query}", json={})
        assert answer.status_code == 403
        assert answer.json["code"] in ("link_invalid", "link_expired")
        saved = api.client.post(f"/cards/{user_id}/save{query}", json={"setup_intent_id": "seti_x"})
        assert saved.status_code == 403
    # A SetupIntent of another customer is not this user's card.
    other = subscribed_user(api, "4242424242424242")
    other_token = link_token(other, "card_update")
    other_secret = api.client.post(f"/cards/{other}/setup-intent?t={other_token}", json={}).json[
        "client_secret"
    ]
    stolen = api.client.post(
        f"/cards/{user_id}/save?t={link_token(user_id, 'card_update')}",
        json={"setup_intent_id": other_secret.split("_secret_")[0]},
    )
    assert stolen.status_code == 409 and stolen.json["code"] == "setup_intent_invalid"
