"""A subscription's renewal state on the customer's page, and a manager's "retry the renewal
now" and "end the subscription" through billing (a stand-in of its internal API), each with an
Idempotency-Key made once per form and a reason recorded in the audit log."""

import re

import pytest
from audit.models import AuditEntry
from django.urls import reverse

pytestmark = pytest.mark.django_db

USER = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


def hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def past_due(billing) -> dict:
    """A subscription whose renewal was declined: in grace, its renewal payment open."""
    payment = billing.add_payment(USER)
    subscription = billing.subscriptions[-1]
    subscription.update(
        status="past_due",
        past_due_since="2026-12-20T10:05:00+00:00",
        grace_until="2026-12-27T10:01:00+00:00",
        last_decline_code="insufficient_funds",
        last_decline_message="Your card has insufficient funds.",
    )
    subscription["renewal"].update(
        payment_id=payment["id"],
        payment_status="requires_payment_method",
        attempts=2,
        next_retry_at="2026-12-22T10:05:00+00:00",
    )
    return subscription


def action_url(subscription: dict, action: str) -> str:
    return reverse("admin:customers_subscription", args=[subscription["id"], action])


def open_form(client, subscription: dict, action: str) -> dict:
    page = client.get(action_url(subscription, action), {"user_id": USER})
    assert page.status_code == 200
    html = page.content.decode()
    return {"idempotency_key": hidden(html, "idempotency_key"), "user_id": hidden(html, "user_id")}


def posts(billing) -> list[dict]:
    return [r for r in billing.requests if r["method"] == "POST"]


def test_customer_page_shows_each_subscriptions_renewal_state_and_actions(manager_client, billing):
    subscription = past_due(billing)

    html = manager_client.get(reverse("admin:customers"), {"user_id": USER}).content.decode()

    for shown in (
        "Next renewal",
        "Dec. 20, 2026, 10:01 a.m.",  # next renewal
        "Dec. 20, 2026, 10:05 a.m.",  # past due since
        "Dec. 22, 2026, 10:05 a.m.",  # next retry
        "Dec. 27, 2026, 10:01 a.m.",  # grace until
        "insufficient_funds — Your card has insufficient funds.",
        "payment requires_payment_method, 2 attempts",
    ):
        assert shown in html, shown
    assert f"{action_url(subscription, 'retry')}?user_id={USER}" in html
    assert f"{action_url(subscription, 'end')}?user_id={USER}" in html


def test_retry_calls_billing_with_the_forms_key_once_and_records_the_reason(
    manager_client, manager, billing
):
    subscription = past_due(billing)
    form = {**open_form(manager_client, subscription, "retry"), "reason": "card topped up"}

    first = manager_client.post(action_url(subscription, "retry"), form)
    second = manager_client.post(action_url(subscription, "retry"), form)  # a double click

    assert first.status_code == second.status_code == 302
    assert first["Location"] == f"{reverse('admin:customers')}?user_id={USER}"
    sent = posts(billing)
    assert [p["path"] for p in sent] == [
        f"/internal/v1/subscriptions/{subscription['id']}/retry-renewal"
    ] * 2
    assert sent[0]["idempotency_key"] == sent[1]["idempotency_key"] == form["idempotency_key"]
    assert form["idempotency_key"] and sent[0]["claims"]["iss"] == "admin"
    (entry,) = AuditEntry.objects.filter(target_type="subscription")
    assert (entry.action, entry.actor, entry.reason) == (
        "retry",
        manager.username,
        "card topped up",
    )
    assert entry.target_id == subscription["id"] and str(entry.customer_id) == USER
    assert entry.changes["next_retry_at"] == "2026-11-29T12:00:00+00:00"
    shown = manager_client.get(first["Location"]).content.decode()
    assert "The renewal will be charged at billing&#x27;s next pass." in shown


def test_end_calls_billing_with_a_key_and_records_the_reason(manager_client, billing):
    subscription = past_due(billing)
    form = {**open_form(manager_client, subscription, "end"), "reason": "fraud reported"}

    response = manager_client.post(action_url(subscription, "end"), form)

    assert response.status_code == 302
    (sent,) = posts(billing)
    assert sent["path"] == f"/internal/v1/subscriptions/{subscription['id']}/end"
    assert sent["idempotency_key"] == form["idempotency_key"] != ""
    assert subscription["status"] == "expired"
    (entry,) = AuditEntry.objects.filter(target_type="subscription")
    assert entry.action == "end" and entry.reason == "fraud reported"
    assert entry.changes["status"] == ["past_due", "expired"]


def test_an_action_without_a_reason_is_refused_before_billing(manager_client, billing):
    subscription = past_due(billing)
    form = {**open_form(manager_client, subscription, "end"), "reason": "  "}

    response = manager_client.post(action_url(subscription, "end"), form)

    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert posts(billing) == [] and subscription["status"] == "past_due"
    assert not AuditEntry.objects.exists()


def test_billings_refusal_is_shown_with_its_code_and_a_new_key(manager_client, billing):
    billing.add_payment(USER)
    subscription = billing.subscriptions[-1]  # active, no renewal open yet
    form = {**open_form(manager_client, subscription, "retry"), "reason": "customer asked"}

    response = manager_client.post(action_url(subscription, "retry"), form)

    html = response.content.decode()
    assert response.status_code == 200
    assert "This subscription has no renewal waiting for payment." in html
    assert "no_renewal_to_retry" in html and "HTTP 409" in html
    assert hidden(html, "idempotency_key") not in ("", form["idempotency_key"])
    assert "customer asked" in html  # the reason is kept for the next attempt
    assert not AuditEntry.objects.exists()


def test_billing_not_answering_keeps_the_key_so_a_retry_is_safe(manager_client, billing):
    subscription = past_due(billing)
    form = {**open_form(manager_client, subscription, "end"), "reason": "chargeback"}
    billing.fail_posts = True

    failed = manager_client.post(action_url(subscription, "end"), form).content.decode()

    assert "gateway_unavailable" in failed and "Submitting the form again is safe" in failed
    assert hidden(failed, "idempotency_key") == form["idempotency_key"]
    assert not AuditEntry.objects.exists()
    billing.fail_posts = False
    assert manager_client.post(action_url(subscription, "end"), form).status_code == 302
    assert {p["idempotency_key"] for p in posts(billing)} == {form["idempotency_key"]}
    assert AuditEntry.objects.get(target_type="subscription").action == "end"


def test_support_may_retry_and_end(as_role, billing):
    subscription = past_due(billing)
    client = as_role("Support")
    html = client.get(reverse("admin:customers"), {"user_id": USER}).content.decode()
    assert action_url(subscription, "retry") in html and action_url(subscription, "end") in html

    form = {**open_form(client, subscription, "end"), "reason": "asked by phone"}

    assert client.post(action_url(subscription, "end"), form).status_code == 302
    assert AuditEntry.objects.get(target_type="subscription").actor == "support"


def test_a_role_without_the_permission_is_refused_and_billing_is_not_called(
    client, django_user_model, billing
):
    """A staff user who may only look at customers: no buttons, and the actions answer 403."""
    from django.contrib.auth.models import Permission

    subscription = past_due(billing)
    viewer = django_user_model.objects.create_user("viewer", password="pw-view-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_customer_billing"))
    client.force_login(viewer)

    html = client.get(reverse("admin:customers"), {"user_id": USER}).content.decode()
    assert "Dec. 27, 2026, 10:01 a.m." in html  # the state is shown
    assert action_url(subscription, "retry") not in html
    assert action_url(subscription, "end") not in html
    form = {"reason": "x", "idempotency_key": "k-1", "user_id": USER}
    for action in ("retry", "end"):
        assert client.get(action_url(subscription, action), {"user_id": USER}).status_code == 403
        assert client.post(action_url(subscription, action), form).status_code == 403
    assert posts(billing) == [] and not AuditEntry.objects.exists()


def test_catalog_manager_is_refused(as_role, billing):
    subscription = past_due(billing)
    client = as_role("Catalog manager")
    form = {"reason": "x", "idempotency_key": "k-2", "user_id": USER}
    assert client.post(action_url(subscription, "end"), form).status_code == 403
    assert posts(billing) == [] and subscription["status"] == "past_due"


def test_unknown_subscription_action_or_user_is_not_found(manager_client, billing):
    subscription = past_due(billing)
    assert (
        manager_client.get(action_url(subscription, "pause"), {"user_id": USER}).status_code == 404
    )
    other = "11111111-2222-4333-8444-555555555555"
    assert (
        manager_client.get(action_url(subscription, "end"), {"user_id": other}).status_code == 404
    )
    assert manager_client.get(action_url(subscription, "end")).status_code == 404
    assert posts(billing) == []
