"""The customers pages against a stand-in of billing's internal API (billing is built in
parallel; this pins the admin's side of the contract)."""

import re
import uuid

import pytest
from django.urls import reverse
from fake_billing_admin import FakeBilling

pytestmark = pytest.mark.django_db

USER = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


@pytest.fixture
def billing(settings):
    fake = FakeBilling(settings.SERVICE_JWT_SECRET)
    settings.BILLING_URL = fake.url
    yield fake
    fake.close()


def hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def test_lookup_shows_the_users_payments_subscriptions_and_refunds(manager_client, billing):
    payment = billing.add_payment(USER, amount=999)
    billing.add_payment(str(uuid.uuid4()), amount=111)  # someone else's
    billing.refunds.append(
        {
            "id": str(uuid.uuid4()),
            "payment_id": payment["id"],
            "amount": 300,
            "currency": "usd",
            "status": "succeeded",
            "reason": "duplicate purchase",
            "created_at": "2026-11-21T09:00:00+00:00",
        }
    )

    response = manager_client.get(reverse("admin:customers"), {"user_id": USER})

    html = response.content.decode()
    assert response.status_code == 200
    assert payment["id"] in html and "9.99 USD" in html and "1.11 USD" not in html
    assert (
        payment["subscription_id"] in html and "duplicate purchase" in html and "3.00 USD" in html
    )
    assert f"/customers/payments/{payment['id']}/refund/" in html
    paths = sorted(r["path"] for r in billing.requests)
    assert paths == [
        f"/internal/v1/users/{USER}/{kind}" for kind in ("payments", "refunds", "subscriptions")
    ]
    assert all(r["claims"]["iss"] == "admin" for r in billing.requests)


def test_partial_refund_is_posted_once_even_when_submitted_twice(manager_client, billing):
    payment = billing.add_payment(USER, amount=999)
    url = reverse("admin:customers_refund", args=[payment["id"]])
    page = manager_client.get(url, {"user_id": USER}).content.decode()
    form = {
        "kind": "partial",
        "amount": "4.50",
        "reason": "film did not play",
        "end_subscription": "on",
        "idempotency_key": hidden(page, "idempotency_key"),
        "refundable": hidden(page, "refundable"),
        "user_id": USER,
    }

    first = manager_client.post(url, form)
    second = manager_client.post(url, form)  # a double click

    assert first.status_code == second.status_code == 302
    assert first["Location"] == f"{reverse('admin:customers')}?user_id={USER}"
    posts = [r for r in billing.requests if r["method"] == "POST"]
    assert [p["body"] for p in posts] == [
        {"amount": 450, "reason": "film did not play", "end_subscription": True}
    ] * 2
    assert posts[0]["idempotency_key"] == posts[1]["idempotency_key"] != ""
    assert len(billing.refunds) == 1 and billing.payments[payment["id"]]["refunded_amount"] == 450
    shown = manager_client.get(first["Location"]).content.decode()
    assert "Refund of 4.50 USD requested (pending)." in shown


def test_billing_refusal_is_shown_with_its_code_and_a_new_key(manager_client, billing):
    payment = billing.add_payment(USER, amount=999)
    url = reverse("admin:customers_refund", args=[payment["id"]])
    page = manager_client.get(url).content.decode()
    key = hidden(page, "idempotency_key")
    billing.payments[payment["id"]]["refunded_amount"] = 900  # refunded elsewhere meanwhile

    response = manager_client.post(
        url,
        {
            "kind": "full",
            "reason": "cancel",
            "idempotency_key": key,
            "refundable": hidden(page, "refundable"),
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Only 99 can still be refunded." in html and "refund_exceeds_remaining" in html
    assert hidden(html, "idempotency_key") != key
    assert billing.refunds == []


def test_billing_failing_keeps_the_key_so_a_retry_is_safe(manager_client, billing):
    payment = billing.add_payment(USER)
    url = reverse("admin:customers_refund", args=[payment["id"]])
    page = manager_client.get(url).content.decode()
    form = {
        "kind": "full",
        "reason": "x",
        "idempotency_key": hidden(page, "idempotency_key"),
        "refundable": hidden(page, "refundable"),
    }
    billing.fail_posts = True

    failed = manager_client.post(url, form).content.decode()

    assert "Payment gateway unavailable." in failed and "gateway_unavailable" in failed
    assert "Submitting the form again is safe" in failed
    assert hidden(failed, "idempotency_key") == form["idempotency_key"]

    billing.fail_posts = False
    retried = manager_client.post(
        url, {**form, "idempotency_key": hidden(failed, "idempotency_key")}
    )
    assert retried.status_code == 302
    assert [r["amount"] for r in billing.refunds] == [999]


def test_billing_unreachable_is_reported_readably(manager_client, billing):
    payment = billing.add_payment(USER)
    billing.close()
    response = manager_client.get(reverse("admin:customers_refund", args=[payment["id"]]))
    html = response.content.decode()
    assert response.status_code == 502
    assert "Billing is unreachable" in html and "billing_unavailable" in html


def test_refunds_need_the_permission(client, django_user_model, billing):
    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    client.force_login(clerk)
    payment = billing.add_payment(USER)
    assert client.get(reverse("admin:customers_refund", args=[payment["id"]])).status_code == 403
    assert client.get(reverse("admin:customers"), {"user_id": USER}).status_code == 403
    assert billing.requests == []
