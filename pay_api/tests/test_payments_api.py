"""billing's payments API: creation is idempotent by payment id; bad input changes nothing."""

import uuid

from pay_api.payments.models import Customer, Payment

from .conftest import auth


def body(**overrides):
    data = {
        "payment_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "amount": 1299,
        "currency": "USD",
        "description": "Premium\nAll films",
        "return_url": "http://cinema.test/done",
    }
    data.update(overrides)
    return data


def test_create_is_idempotent_by_payment_id(client):
    data = body()
    first = client.post("/internal/v1/payments", json=data, headers=auth())
    assert first.status_code == 201
    assert first.json == {
        "payment_id": data["payment_id"],
        "status": "pending",
        "payment_url": f"http://pay.test/pay/{data['payment_id']}",
        "amount": 1299,
        "currency": "usd",
        "stripe_payment_intent_id": None,
    }
    again = client.post("/internal/v1/payments", json=data, headers=auth())
    assert again.status_code == 200
    assert again.json == first.json

    other = client.post("/internal/v1/payments", json={**data, "amount": 1300}, headers=auth())
    assert other.status_code == 409
    assert other.json["code"] == "payment_conflict"


def test_invalid_body_is_422_and_stores_nothing(client, db):
    for bad in (
        body(amount=-1),
        body(amount="12.99"),
        body(amount=12.5),
        body(currency="dollars"),
        body(payment_id="not-a-uuid"),
        body(return_url="javascript:alert(1)"),
        body(amount=750, gross_amount=1000, discount_amount=200),  # 1000 - 200 is not 750
        body(discount_amount=-1),
        body(promo_code="X" * 65),
    ):
        response = client.post("/internal/v1/payments", json=bad, headers=auth())
        assert response.status_code == 422, bad
        assert response.json["code"] == "validation_error"
        if bad["payment_id"] != "not-a-uuid":
            with db.transaction() as session:
                assert session.get(Payment, uuid.UUID(bad["payment_id"])) is None
    response = client.post("/internal/v1/payments", data="nope", headers=auth())
    assert response.status_code == 422


def test_get_has_the_full_shape(client, api):
    payment = api.create_payment()
    state = api.get_payment(payment["payment_id"])
    assert state["amount_refunded"] == 0
    assert state["failure_code"] is None and state["failure_message"] is None
    assert api.get_payment(payment["payment_id"], refresh=True) == state  # no intent yet


def test_unknown_payment_is_404(client):
    response = client.get(f"/internal/v1/payments/{uuid.uuid4()}", headers=auth())
    assert response.status_code == 404
    assert response.json["code"] == "payment_not_found"
    response = client.post(f"/pay/{uuid.uuid4()}/charge", json={"setup_intent_id": "seti_x"})
    assert response.status_code == 404
    assert response.json["code"] == "payment_not_found"


def test_a_stripe_customer_names_its_user_for_billings_search(client, api, db):
    user_id = uuid.uuid4()
    payment = api.create_payment(user_id=user_id)
    api.save_card(payment["payment_id"], "4242424242424242")  # creates the user's Customer
    with db.transaction() as session:
        customer_id = session.get(Customer, user_id).stripe_customer_id
    assert customer_id.startswith("cus_")

    response = client.get(f"/internal/v1/customers/{customer_id}", headers=auth())
    assert response.status_code == 200
    assert response.json == {"stripe_customer_id": customer_id, "user_id": str(user_id)}

    unknown = client.get("/internal/v1/customers/cus_nobody", headers=auth())
    assert unknown.status_code == 404 and unknown.json["code"] == "customer_not_found"
    refused = client.get(f"/internal/v1/customers/{customer_id}", headers=auth(iss="movies"))
    assert refused.status_code == 403
