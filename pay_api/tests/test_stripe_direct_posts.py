"""A renewal's two Stripe requests without the SDK's objects (`stripe_http.DirectPosts`): on the
wire, the very request the SDK sends; every answer read as the SDK reads it — over real sockets
(`raw_server.py`), each case also sent through the SDK itself and compared."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import stripe
from pay_api.errors import GatewayRejected, GatewayUnavailable
from pay_api.gateway import CardDeclined, IntentState
from pay_api.stripe_http import form_encoded
from stripe._encode import _api_encode

from .raw_server import Answer
from .test_stripe_http_client import INTENT, SERVER_ERROR, create_intent, gateway_for

CREATE = {
    "amount": 999,
    "currency": "usd",
    "customer": "cus_raw",
    "payment_method": "pm_raw",
    "payment_method_types": ["card"],
    "metadata": {"payment_id": "p-1"},
    "description": "Premium",
}
KEY = "pay_api-pi-create-p-1-pm_raw"

pytestmark = pytest.mark.usefixtures("stripe_wire")


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch):
    """Telemetry headers carry the previous request's timing: off, so two requests compare."""
    monkeypatch.setattr(stripe, "enable_telemetry", False)


@pytest.mark.parametrize(
    "params",
    [
        CREATE,
        {"payment_method": "pm_1", "off_session": True, "use_stripe_sdk": False},
        {"expand": ["latest_charge", "customer"], "skipped": None},
        {"metadata": {"payment_id": "a b&c=d", "note": "ünï 🎬"}, "amount": 0},
        {"items": [{"price": "p_1", "quantity": 2}, {"price": "p_2"}], "nested": [[1, 2], [3]]},
        {"description": "commas, slashes/ [brackets] +plus% percent"},
    ],
)
def test_the_form_body_is_the_sdks(params):
    sdk = urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")
    assert form_encoded(params) == sdk


def test_create_and_confirm_send_what_the_sdk_sends(servers):
    server = servers(Answer(200, INTENT))
    gateway = gateway_for(server.url)
    direct = create_intent(gateway)
    gateway.client.v1.payment_intents.create(params=CREATE, options={"idempotency_key": KEY})
    confirm = {"payment_method": "pm_raw", "off_session": True}
    gateway.confirm_payment_intent(
        "pi_raw", payment_method_id="pm_raw", idempotency_key="k-1", off_session=True
    )
    gateway.client.v1.payment_intents.confirm(
        "pi_raw", params=confirm, options={"idempotency_key": "k-1"}
    )
    ours_create, sdk_create, ours_confirm, sdk_confirm = server.requests
    assert ours_create == sdk_create
    assert ours_confirm == sdk_confirm
    assert (ours_create.method, ours_create.target) == ("POST", "/v1/payment_intents")
    assert ours_confirm.target == "/v1/payment_intents/pi_raw/confirm"
    assert ours_create.headers["idempotency-key"] == KEY
    assert ours_create.headers["authorization"] == "Bearer sk_test_offline"
    assert ours_create.headers["stripe-version"] == stripe.api_version
    assert b"metadata[payment_id]=p-1" in ours_create.body
    assert ours_confirm.body == b"payment_method=pm_raw&off_session=true"
    assert direct == IntentState.from_stripe(
        gateway.client.v1.payment_intents.retrieve("pi_raw")
    ), "the answer reads the same as the SDK's object"


def test_an_intent_id_is_quoted_in_the_path_as_the_sdk_quotes_it(servers):
    server = servers(Answer(200, INTENT))
    gateway = gateway_for(server.url)
    gateway.confirm_payment_intent("pi_a/b c", payment_method_id="pm_raw", idempotency_key="k")
    gateway.client.v1.payment_intents.confirm(
        "pi_a/b c",
        params={"payment_method": "pm_raw", "use_stripe_sdk": True},
        options={"idempotency_key": "k"},
    )
    assert (
        server.requests[0].target
        == server.requests[1].target
        == ("/v1/payment_intents/pi_a%2Fb+c/confirm")
    )


DECLINE = {
    "error": {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }
}
INVALID = {
    "error": {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such customer: 'cus_raw'",
        "param": "customer",
    }
}
AUTHENTICATION = {"error": {"type": "invalid_request_error", "message": "Invalid API Key."}}


@pytest.mark.parametrize(
    "answer",
    [
        Answer(402, DECLINE),
        Answer(400, INVALID),
        Answer(401, AUTHENTICATION),
        Answer(404, INVALID),
        Answer(200, raw=b"<html>not json</html>"),
        Answer(402, raw=b"not json either"),
    ],
    ids=["decline", "invalid", "unauthenticated", "missing", "200 not json", "402 not json"],
)
def test_an_answer_other_than_an_object_raises_what_the_sdk_raises(servers, answer):
    server = servers(answer)
    gateway = gateway_for(server.url)
    with pytest.raises(stripe.StripeError) as ours:
        gateway.direct.post("/v1/payment_intents", CREATE, idempotency_key=KEY)
    with pytest.raises(stripe.StripeError) as sdk:
        gateway.client.v1.payment_intents.create(params=CREATE, options={"idempotency_key": KEY})
    assert type(ours.value) is type(sdk.value)
    for attribute in ("code", "http_status", "json_body", "user_message", "_message"):
        assert getattr(ours.value, attribute) == getattr(sdk.value, attribute), attribute
    assert len(server.requests) == 2  # neither retried


def test_a_decline_at_create_is_the_gateways_card_declined(servers):
    server = servers(Answer(402, DECLINE))
    with pytest.raises(CardDeclined) as declined:
        create_intent(gateway_for(server.url))
    assert declined.value.decline_code == "insufficient_funds"


def test_a_declined_confirmation_answers_the_intent_with_the_reason(servers):
    """As through the SDK: the decline is read, the intent fetched, the reason kept."""
    failed = {**INTENT, "status": "requires_payment_method"}
    server = servers(Answer(402, DECLINE), Answer(200, failed))
    state = gateway_for(server.url).confirm_payment_intent(
        "pi_raw", payment_method_id="pm_raw", idempotency_key="k-2", off_session=True
    )
    assert (state.status, state.failure_code) == ("requires_payment_method", "insufficient_funds")
    assert [r.method for r in server.requests] == ["POST", "GET"]


def test_a_rejected_request_is_the_gateways_rejection(servers):
    server = servers(Answer(400, INVALID))
    with pytest.raises(GatewayRejected) as rejected:
        create_intent(gateway_for(server.url))
    assert rejected.value.stripe_code == "resource_missing"


def test_server_errors_are_retried_with_the_same_key_then_unavailable(servers):
    server = servers(Answer(500, SERVER_ERROR))
    with pytest.raises(GatewayUnavailable):
        create_intent(gateway_for(server.url))
    assert len(server.requests) == 3  # the first and the SDK's 2 retries
    assert {r.headers["idempotency-key"] for r in server.requests} == {KEY}
    assert len({r.body for r in server.requests}) == 1
