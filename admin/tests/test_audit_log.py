"""The audit log: every manager action is recorded with who, when, what and why; the rows can
be neither edited in the admin nor updated or deleted in the database."""

import uuid

import pytest
from audit.log import ReasonRequired, record
from audit.models import AuditEntry
from catalog.models import Film, Plan
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.urls import reverse
from test_admin_pages import plan_form as base_plan_form

pytestmark = pytest.mark.django_db

USER = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


def plan_form(**overrides) -> dict:
    return base_plan_form(**{"name": "Premium", "description": "", "price": "9.99",
                             "currency": "usd", "all_films": "on", **overrides})  # fmt: skip


def test_plan_create_change_and_delete_are_recorded_with_what_changed(manager_client, manager):
    manager_client.post(reverse("admin:catalog_plan_add"), plan_form())
    plan = Plan.objects.get(name="Premium")
    created = AuditEntry.objects.get(action="create")
    assert (created.actor, created.actor_id, created.target_type) == ("manager", manager.pk, "plan")
    assert created.target_id == str(plan.pk) and created.changes["price_amount"] == 999

    url = reverse("admin:catalog_plan_change", args=[plan.pk])
    form = plan_form(price="12.50", refund_window_days="7", change_reason="Autumn prices")
    assert manager_client.post(url, form).status_code == 302
    change = AuditEntry.objects.get(action="change")
    assert change.changes == {"price_amount": [999, 1250], "refund_window_days": [14, 7]}
    assert change.reason == "Autumn prices" and change.target_repr == "Premium"

    assert manager_client.post(url, form).status_code == 302  # nothing changed: nothing recorded
    assert AuditEntry.objects.filter(action="change").count() == 1

    delete = reverse("admin:catalog_plan_delete", args=[plan.pk])
    assert manager_client.post(delete, {"post": "yes"}).status_code == 302
    deleted = AuditEntry.objects.get(action="delete")
    assert deleted.target_id == str(plan.pk) and deleted.changes["name"] == "Premium"


def test_film_list_actions_and_film_list_changes_are_recorded(manager_client):
    film = Film.objects.create(title="Nosferatu")
    plan = Plan.objects.create(name="Classics", price_amount=500, currency="usd")
    manager_client.post(
        reverse("admin:catalog_film_changelist"),
        {"action": "deactivate", "_selected_action": [str(film.pk)]},
    )
    entry = AuditEntry.objects.get(target_type="film")
    assert (entry.action, entry.changes) == ("change", {"active": [True, False]})

    url = reverse("admin:catalog_plan_change", args=[plan.pk])
    form = plan_form(name="Classics", price="5.00", all_films="", films=[str(film.pk)])
    form.pop("all_films")
    assert manager_client.post(url, form).status_code == 302, "saved"
    change = AuditEntry.objects.get(target_type="plan")
    assert change.changes == {"films": [[], ["Nosferatu"]]}


def test_a_refund_is_recorded_with_its_reason_and_customer(manager_client, billing):
    payment = billing.add_payment(USER, amount=999)
    url = reverse("admin:customers_refund", args=[payment["id"]])
    page = manager_client.get(url).content.decode()
    key = page.split('name="idempotency_key" value="')[1].split('"')[0]
    response = manager_client.post(
        url,
        {
            "kind": "partial",
            "amount": "2.50",
            "reason": "Broken stream on Friday",
            "idempotency_key": key,
            "refundable": "999",
            "user_id": USER,
        },
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="refund")
    assert entry.customer_id == uuid.UUID(USER) and entry.target_id == payment["id"]
    assert entry.reason == "Broken stream on Friday"
    assert entry.changes["amount"] == 250 and entry.changes["amount_display"] == "2.50 USD"


def test_money_actions_need_a_reason_in_code_and_in_the_database(manager):
    with pytest.raises(ReasonRequired):
        record(user=manager, action="refund", target_type="payment", target_id="x", reason=" ")
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.create(actor="m", action="refund", target_type="payment", target_id="x")
    assert not AuditEntry.objects.exists()


def test_the_database_refuses_to_change_or_remove_entries(manager):
    entry = record(user=manager, action="change", target_type="plan", target_id="1")
    for attempt in (
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: connection.cursor().execute("TRUNCATE audit_auditentry"),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    entry.refresh_from_db()
    assert entry.reason == "" and AuditEntry.objects.count() == 1


def test_the_log_is_shown_filterable_and_read_only(manager_client, manager):
    record(user=manager, action="change", target_type="plan", target_id="p1", target_repr="Gold")
    record(user=manager, action="refund", target_type="payment", target_id="pay1", reason="dup")
    url = reverse("admin:audit_auditentry_changelist")
    page = manager_client.get(url).content.decode()
    assert "Gold" in page and "dup" in page
    refunds_only = manager_client.get(url, {"action__exact": "refund"}).content.decode()
    assert "dup" in refunds_only and "Gold" not in refunds_only
    found = manager_client.get(url, {"q": "pay1"}).content.decode()
    assert "dup" in found and "Gold" not in found

    entry = AuditEntry.objects.get(action="refund")
    detail = manager_client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert (
        manager_client.post(
            reverse("admin:audit_auditentry_change", args=[entry.pk]), {"reason": "x"}
        ).status_code
        == 403
    )
    assert manager_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert manager_client.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.reason == "dup"
