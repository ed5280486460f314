"""The customers pages against a stand-in of billing's internal API (billing is built in
parallel; this pins the admin's side of the contract)."""

import re
import uuid

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

USER = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


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


def test_a_customer_is_found_from_a_payment_id_and_shown(manager_client, billing):
    payment = billing.add_payment(USER, amount=999)
    declined = billing.add_payment(USER, amount=999, status="expired")
    declined.update(failure_code="card_declined", failure_message="Your card was declined.")
    response = manager_client.get(reverse("admin:customers"), {"q": f"  {payment['id']} "})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:customers") + f"?user_id={USER}"
    page = manager_client.get(response["Location"]).content.decode()
    failed = page.split('id="failed-payments"')[1].split("</table>")[0]
    assert declined["id"] in failed and "card_declined" in failed and payment["id"] not in failed
    assert reverse("admin:customers_timeline", args=[USER]) in page
    assert reverse("admin:customers_payment", args=[payment["id"]]) in page


def test_a_search_matching_several_customers_lists_them_and_none_says_so(manager_client, billing):
    other = str(uuid.uuid4())
    billing.search_matches["cus_shared"] = [
        {"user_id": USER, "via": "stripe_customer", "payment_id": None},
        {"user_id": other, "via": "stripe_customer", "payment_id": None},
    ]
    page = manager_client.get(reverse("admin:customers"), {"q": "cus_shared"}).content.decode()
    assert f"?user_id={USER}" in page and f"?user_id={other}" in page
    nothing = manager_client.get(reverse("admin:customers"), {"q": "pi_unknown"}).content.decode()
    assert 'id="no-match"' in nothing
    search = [r for r in billing.requests if r["path"].startswith("/internal/v1/customers/search")]
    assert search[-1]["path"] == "/internal/v1/customers/search?q=pi_unknown"


def test_the_timeline_merges_billing_and_the_managers_actions_in_order(
    manager_client, billing, manager
):
    from audit.log import record

    payment = billing.add_payment(USER, amount=999)
    billing.timelines[USER] = [
        {"at": "2026-11-20T10:00:00+00:00", "kind": "payment_created", "title": "Payment of 9.99 USD started",
         "status": "succeeded", "amount": 999, "currency": "usd", "payment_id": payment["id"]},
        {"at": "2026-11-20T10:01:00+00:00", "kind": "payment_succeeded", "title": "Payment succeeded",
         "status": "succeeded", "amount": 999, "currency": "usd", "payment_id": payment["id"]},
        {"at": "2099-01-01T00:00:00+00:00", "kind": "subscription_ended", "title": "Ended (expired)",
         "status": "expired", "subscription_id": payment["subscription_id"]},
    ]  # fmt: skip
    entry = record(
        user=manager, action="refund", target_type="payment", target_id=payment["id"],
        customer_id=USER, reason="Playback problems", changes={"amount_display": "1.00 USD"},
    )  # fmt: skip
    page = manager_client.get(reverse("admin:customers_timeline", args=[USER])).content.decode()
    rows = page.split('id="timeline"')[1].split("</table>")[0]
    order = [rows.index(t) for t in ("Payment of 9.99 USD started", "Payment succeeded",
                                     "manager: refund payment", "Ended (expired)")]  # fmt: skip
    assert order == sorted(order)
    assert "Why: Playback problems" in rows and "1.00 USD" in rows
    assert reverse("admin:customers_payment", args=[payment["id"]]) in rows
    assert reverse("admin:audit_auditentry_change", args=[entry.pk]) in rows


def test_the_payment_page_shows_refunds_ledger_and_actions(manager_client, billing, manager):
    from audit.log import record

    payment = billing.add_payment(USER, amount=999)
    payment["ledger"] = [
        {"kind": "charge", "amount": 999, "currency": "usd", "refund_id": None,
         "created_at": "2026-11-20T10:01:00+00:00"},
    ]  # fmt: skip
    record(user=manager, action="refund", target_type="payment", target_id=payment["id"],
           customer_id=USER, reason="Double charge")  # fmt: skip
    page = manager_client.get(reverse("admin:customers_payment", args=[payment["id"]]))
    html = page.content.decode()
    assert page.status_code == 200 and "charge" in html and "9.99 USD" in html
    assert "Double charge" in html and "Refund…" in html
    missing = manager_client.get(reverse("admin:customers_payment", args=[uuid.uuid4()]))
    assert missing.status_code == 404 and "payment_not_found" in missing.content.decode()


def test_the_customers_page_lists_everyones_newest_and_failed_payments(manager_client, billing):
    paid = billing.add_payment(USER, amount=999)
    other = str(uuid.uuid4())
    declined = billing.add_payment(other, amount=500, status="failed")
    declined["created_at"] = "2026-11-21T10:00:00+00:00"
    page = manager_client.get(reverse("admin:customers")).content.decode()
    failed = page.split('id="recent-failed"')[1].split("</table>")[0]
    newest = page.split('id="recent-all"')[1].split("</table>")[0]
    assert declined["id"] in failed and paid["id"] not in failed
    assert newest.index(declined["id"]) < newest.index(paid["id"])  # newest first
    assert f"?user_id={other}" in failed
    calls = [r["path"] for r in billing.requests]
    assert calls == [
        "/internal/v1/reports/recent-payments?limit=10&failed=false",
        "/internal/v1/reports/recent-payments?limit=10&failed=true",
    ]
