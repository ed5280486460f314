"""Whatever comes in, pay_api answers a 4xx with a JSON `code` (or its normal answer) and changes
nothing: the cases found by hand, then hypothesis over the page's calls and the webhook."""

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pay_api.payments.card_setups import CardSetup
from pay_api.webhooks.models import StripeEvent
from sqlalchemy import func, select

from .conftest import auth
from .test_webhooks import event, post, signed

MAX_BODY = 16384  # PAY_API_MAX_BODY_BYTES's default
WEBHOOK_MAX_BODY = 1048576  # PAY_API_WEBHOOK_MAX_BODY_BYTES's default


def assert_client_error(response, code: str | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and isinstance(body.get("code"), str), response.data[:300]
    if code:
        assert body["code"] == code, body


def inbox_size(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(StripeEvent))


def signed_post(client, payload: bytes, *, at: int | None = None):
    return post(client, payload, signed(payload, at=at))


# --- the webhook: signed bodies that are not events --------------------------------------------


def _event_body(**changes) -> dict:
    body = json.loads(event("payment_intent.succeeded", {"id": "pi_x", "amount": 100}))
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "payload",
    [
        b"[1, 2, 3]",
        b'"just a string"',
        b"not json at all",
        b"\xff\xfe",
        json.dumps(_event_body(type=42)).encode(),
        json.dumps(_event_body(type=None)).encode(),
        json.dumps(_event_body(id="evt_" + "x" * 300)).encode(),
        json.dumps(_event_body(id="evt_\u0000")).encode(),
        json.dumps(_event_body(data={})).encode(),
        json.dumps(_event_body(data={"object": "pi_x"})).encode(),
        json.dumps(_event_body(data={"object": {"amount": 100}})).encode(),
        json.dumps(_event_body(data={"object": {"id": 12}})).encode(),
        json.dumps(_event_body(data={"object": {"id": "pi_" + "y" * 300}})).encode(),
        b"[" * 50000 + b"]" * 50000,
        b'{"a":' * 20000 + b"1" + b"}" * 20000,
    ],
    ids=lambda p: p[:40].decode("utf-8", "replace"),
)
def test_a_signed_body_that_is_not_an_event_is_400_and_stores_nothing(client, db, payload):
    before = inbox_size(db)
    assert_client_error(signed_post(client, payload))
    assert inbox_size(db) == before


def test_a_non_numeric_amount_in_a_signed_event_is_not_read(client, db, api):
    """The body's amounts are never read (the object is fetched from Stripe)."""
    payload = event(
        "charge.refunded", {"id": "ch_x", "payment_intent": "pi_nobody", "amount_refunded": "lots"}
    )
    response = signed_post(client, payload)
    assert response.status_code == 200, response.json


def test_a_future_timestamp_beyond_the_tolerance_is_refused(client, db):
    payload = event("payment_intent.succeeded", {"id": "pi_future"})
    before = inbox_size(db)
    response = signed_post(client, payload, at=int(time.time()) + 301)
    assert_client_error(response, "invalid_signature")
    assert inbox_size(db) == before
    assert signed_post(client, payload, at=int(time.time()) + 60).status_code == 200


def test_webhooks_have_more_room_than_the_api(client, db):
    roomy = event("customer.updated", {"id": "cus_x", "note": "x" * (MAX_BODY * 4)})
    assert signed_post(client, roomy).status_code == 200
    huge = event("customer.updated", {"id": "cus_x", "note": "x" * WEBHOOK_MAX_BODY})
    assert_client_error(signed_post(client, huge), "payload_too_large")


# --- the API and the page: NUL characters, nesting, sizes, foreign ids --------------------------


def test_a_nul_in_a_description_or_a_refund_reason_changes_nothing(client, api):
    body = {
        "payment_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "amount": 500,
        "currency": "usd",
        "description": "Premium\u0000",
    }
    assert_client_error(client.post("/internal/v1/payments", json=body, headers=auth()))
    assert (
        client.get(f"/internal/v1/payments/{body['payment_id']}", headers=auth()).status_code == 404
    )
    refund = {
        "refund_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
        "amount": 1,
        "reason": "why\u0000",
    }
    assert_client_error(client.post("/internal/v1/refunds", json=refund, headers=auth()))


def test_deeply_nested_json_on_the_page_is_a_client_error(client, api):
    payment = api.create_payment()
    body = b'{"setup_intent_id":' * 10000 + b"1" + b"}" * 10000
    response = client.post(
        f"/pay/{payment['payment_id']}/charge", data=body, content_type="application/json"
    )
    assert_client_error(response)


def test_a_body_past_the_limit_is_413(client, api):
    payment = api.create_payment()
    response = client.post(
        f"/pay/{payment['payment_id']}/charge",
        json={"setup_intent_id": "seti_" + "x" * MAX_BODY},
    )
    assert_client_error(response, "payload_too_large")


def test_a_setup_intent_of_another_payment_is_refused_without_asking_stripe(client, api):
    """Even the same user's SetupIntent, made for another payment: 409, nothing charged."""
    user_id = uuid.uuid4()
    first = api.create_payment(user_id=user_id)
    second = api.create_payment(user_id=user_id)
    seti = api.save_card(first["payment_id"], "4242424242424242")
    response = api.charge(second["payment_id"], seti)
    assert_client_error(response, "setup_intent_invalid")
    assert api.get_payment(second["payment_id"])["stripe_payment_intent_id"] is None
    unknown = api.charge(second["payment_id"], "seti_" + "0" * 24)
    assert_client_error(unknown, "setup_intent_invalid")


def test_setup_intents_are_reused_while_untouched_and_capped(app, client, db, api):
    payment = api.create_payment()
    payment_id = payment["payment_id"]
    secrets = {
        client.post(f"/pay/{payment_id}/setup-intent").json["client_secret"] for _ in range(30)
    }
    assert len(secrets) == 1  # one SetupIntent at Stripe, handed out again

    def made() -> int:
        with db.transaction() as session:
            return session.scalar(
                select(func.count())
                .select_from(CardSetup)
                .where(CardSetup.payment_id == uuid.UUID(payment_id))
            )

    assert made() == 1
    limit = app.extensions["pay_api.settings"].setup_intents_per_payment
    # The first card uses the untouched one; each later card needs a new SetupIntent.
    for _ in range(limit):
        api.save_card(payment_id, "4000000000000341")
    assert made() == limit
    assert_client_error(client.post(f"/pay/{payment_id}/setup-intent"), "setup_intent_limit")
    assert made() == limit


# --- hypothesis: anything at the page's calls and at the webhook ---------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
page_calls = st.sampled_from(
    [
        ("POST", "/pay/{}/charge"),
        ("POST", "/pay/{}/sync"),
        ("POST", "/pay/{}/setup-intent"),
        ("GET", "/pay/{}/status"),
        ("GET", "/pay/{}"),
    ]
)
HYPOTHESIS = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


@pytest.fixture(scope="module")
def a_payment_id(app):
    from .conftest import Api

    return Api(app.test_client(), None).create_payment()["payment_id"]


@HYPOTHESIS
@given(
    call=page_calls,
    which=st.one_of(st.just("payment"), st.text(max_size=60)),
    body=st.one_of(
        json_values,
        st.fixed_dictionaries({"setup_intent_id": json_values}),
        st.fixed_dictionaries({"setup_intent_id": st.from_regex(r"\Aseti_[A-Za-z0-9_]{0,40}\Z")}),
    ),
)
def test_the_page_calls_never_answer_5xx(client, a_payment_id, call, which, body):
    method, template = call
    raw_id = a_payment_id if which == "payment" else which
    url = template.format(raw_id.replace("/", "%2F").replace("?", "%3F").replace("#", "%23"))
    response = client.open(url, method=method, json=body)
    assert response.status_code < 500, (method, url, body, response.data[:300])
    if response.status_code >= 400 and response.mimetype == "application/json":
        assert isinstance(response.json.get("code"), str)


stripe_ids = st.one_of(
    st.from_regex(r"\A(pi|ch|re|cus|seti)_[A-Za-z0-9]{1,30}\Z"), st.text(max_size=30), json_values
)
event_types = st.one_of(
    st.sampled_from(
        [
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "payment_intent.canceled",
            "charge.refunded",
            "charge.succeeded",
            "refund.updated",
            "refund.failed",
            "customer.created",
        ]
    ),
    json_values,
)


@HYPOTHESIS
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "id": st.one_of(st.from_regex(r"\Aevt_[A-Za-z0-9]{1,30}\Z"), json_values),
                "type": event_types,
                "data": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "object": st.one_of(
                                json_values,
                                st.fixed_dictionaries(
                                    {"id": stripe_ids, "payment_intent": stripe_ids},
                                    optional={"amount": json_values, "metadata": json_values},
                                ),
                            )
                        }
                    ),
                ),
            }
        ),
    )
)
def test_the_webhook_never_answers_5xx_to_a_signed_body(client, body):
    payload = json.dumps(body).encode()
    response = signed_post(client, payload)
    assert response.status_code in (200, 400), (body, response.data[:300])
    assert isinstance(response.json, dict)
