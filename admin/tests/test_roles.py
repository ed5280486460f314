"""Roles are groups made by a migration; every action is refused to the wrong role."""

import re
from decimal import Decimal

import pytest
from catalog.models import Plan
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from roles.definitions import sync_roles

pytestmark = pytest.mark.django_db

USER = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


def perms(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_the_migration_made_the_three_roles():
    support, catalog, administrator = (
        perms("Support"),
        perms("Catalog manager"),
        perms("Administrator"),
    )
    assert {"customers.view_customer_billing", "customers.issue_refund",
            "customers.manage_subscription"} <= support  # fmt: skip
    assert "customers.refund_any_amount" not in support and "catalog.change_plan" not in support
    assert {"catalog.add_plan", "catalog.change_plan", "catalog.delete_film"} <= catalog
    assert not {p for p in catalog if not p.startswith("catalog.")}
    assert {"reports.view_dashboard", "reports.export_data", "customers.refund_any_amount",
            "audit.view_auditentry", "auth.change_user"} <= administrator  # fmt: skip
    assert not {
        p for p in support | catalog if p.startswith("audit.") and p != "audit.view_auditentry"
    }


def test_permissions_that_appear_later_join_their_role():
    """e.g. promo codes' permissions, when their model arrives in the catalog app."""
    plan_type = ContentType.objects.get(app_label="catalog", model="plan")
    Permission.objects.create(codename="change_promocode", name="x", content_type=plan_type)
    sync_roles(group_model=Group, permission_model=Permission)
    assert "catalog.change_promocode" in perms("Catalog manager")
    assert "catalog.change_promocode" in perms("Administrator")
    assert "catalog.change_promocode" not in perms("Support")


def test_support_sees_customers_but_not_the_catalog_editor_nor_the_money_figures(as_role, billing):
    client = as_role("Support")
    plan = Plan.objects.create(name="Gold", price_amount=999, all_films=True)
    assert client.get(reverse("admin:customers"), {"user_id": USER}).status_code == 200
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 200
    assert client.get(reverse("admin:catalog_plan_add")).status_code == 403
    assert client.get(reverse("admin:catalog_promocode_add")).status_code == 403
    change = client.post(reverse("admin:catalog_plan_change", args=[plan.pk]), {"name": "Free"})
    assert change.status_code == 403
    plan.refresh_from_db()
    assert plan.name == "Gold"
    assert 'id="dashboard"' not in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse("admin:reports_export", args=["payments"])).status_code == 403
    assert not any(r["path"].startswith("/internal/v1/reports") for r in billing.requests)


def test_catalog_manager_edits_plans_but_sees_no_customer(as_role, billing):
    client = as_role("Catalog manager")
    payment = billing.add_payment(USER)
    assert client.get(reverse("admin:catalog_plan_add")).status_code == 200
    assert client.get(reverse("admin:catalog_promocode_add")).status_code == 200
    assert client.get(reverse("admin:catalog_personaldiscount_add")).status_code == 200
    assert client.get(reverse("admin:customers"), {"user_id": USER}).status_code == 403
    assert client.get(reverse("admin:customers_timeline", args=[USER])).status_code == 403
    assert client.get(reverse("admin:customers_payment", args=[payment["id"]])).status_code == 403
    refund = reverse("admin:customers_refund", args=[payment["id"]])
    assert client.post(refund, {"kind": "full", "reason": "x"}).status_code == 403
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 403
    assert client.get(reverse("admin:reports_export", args=["refunds"])).status_code == 403
    assert billing.requests == []


def test_administrator_sees_the_dashboard_and_exports(as_role, billing):
    client = as_role("Administrator")
    assert 'id="dashboard"' in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse("admin:reports_export", args=["payments"])).status_code == 200
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 200


def _refund(client, payment: dict, amount: str):
    url = reverse("admin:customers_refund", args=[payment["id"]])
    page = client.get(url).content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]*)"', page).group(1)
    refundable = re.search(r'name="refundable" value="([^"]*)"', page).group(1)
    return client.post(
        url,
        {"kind": "partial", "amount": amount, "reason": "goodwill", "idempotency_key": key,
         "refundable": refundable, "user_id": USER},
    )  # fmt: skip


def _posted_refunds(billing) -> list[int]:
    return [r["body"]["amount"] for r in billing.requests if r["method"] == "POST"]


def test_support_refunds_up_to_the_configured_limit(as_role, billing, settings):
    settings.SUPPORT_REFUND_LIMITS = {"usd": Decimal("50")}
    client = as_role("Support")
    payment = billing.add_payment(USER, amount=10_000)  # 100.00 USD
    refused = _refund(client, payment, "50.01")
    assert refused.status_code == 200
    assert "Your role may refund at most 50.00 USD" in refused.content.decode()
    assert _posted_refunds(billing) == []
    assert _refund(client, payment, "50.00").status_code == 302
    assert _posted_refunds(billing) == [5000]

    in_sek = billing.add_payment(USER, amount=1000, currency="sek")
    refused = _refund(client, in_sek, "1.00")
    assert "Your role may not refund SEK payments" in refused.content.decode()
    assert _posted_refunds(billing) == [5000]


def test_administrator_refunds_above_the_support_limit(as_role, billing, settings):
    settings.SUPPORT_REFUND_LIMITS = {"usd": Decimal("50")}
    client = as_role("Administrator")
    payment = billing.add_payment(USER, amount=10_000)
    assert _refund(client, payment, "80.00").status_code == 302
    assert _posted_refunds(billing) == [8000]
