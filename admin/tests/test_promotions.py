"""Promo codes and personal discounts in the admin: the rules a manager's form enforces (one kind
of discount, plans, Stripe's minimum charge), what etl reads (updated_at, tombstones), and the
redemptions page (read from billing's internal API)."""

import uuid

import pytest
from catalog.models import DeletionLog, PersonalDiscount, Plan, PromoCode
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from fake_billing_admin import FakeBilling

pytestmark = pytest.mark.django_db


def make_plan(name="Premium", price_amount=999, currency="usd", **fields) -> Plan:
    return Plan.objects.create(
        name=name, price_amount=price_amount, currency=currency, all_films=True, **fields
    )


def promo_form(**overrides) -> dict:
    data = {
        "code": "SPRING25",
        "description": "",
        "active": "on",
        "percent_off": "25",
        "amount_off": "",
        "currency": "",
        "duration": "once",
        "duration_periods": "",
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
        "max_redemptions": "100",
        "max_per_user": "1",
        "all_plans": "on",
        "plans": [],
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def add_promo(manager_client, **overrides):
    return manager_client.post(reverse("admin:catalog_promocode_add"), promo_form(**overrides))


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was expected to be shown again with errors"
    return str(response.context["adminform"].form.errors)


def test_manager_creates_a_promo_code_for_some_plans(manager_client):
    plan = make_plan()
    response = add_promo(
        manager_client,
        all_plans=None,
        plans=[str(plan.pk)],
        percent_off="",
        amount_off="3.00",
        currency="usd",
        duration="repeating",
        duration_periods="3",
    )
    assert response.status_code == 302, errors_of(response)
    promo = PromoCode.objects.get(code="SPRING25")
    assert (promo.amount_off, promo.currency, promo.duration_periods) == (300, "usd", 3)
    assert list(promo.plans.all()) == [plan]
    assert promo.discount_display == "3.00 USD off"
    change = manager_client.get(reverse("admin:catalog_promocode_change", args=[promo.pk]))
    assert 'name="amount_off" value="3.00"' in change.content.decode()  # shown as typed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"percent_off": "25", "amount_off": "3", "currency": "usd"}, "not both"),
        ({"percent_off": ""}, "not both"),
        ({"percent_off": "", "amount_off": "3"}, "needs its currency"),
        ({"percent_off": "", "amount_off": "3.001", "currency": "usd"}, "2 decimal places"),
        ({"percent_off": "", "amount_off": "0", "currency": "usd"}, "greater than zero"),
        ({"percent_off": "101"}, "At most 100"),
        ({"duration": "repeating"}, "How many payments"),
        ({"code": "two words"}, "no spaces"),
        ({"all_plans": None}, "Choose the plans"),
        (
            {
                "valid_from_0": "2030-01-02",
                "valid_from_1": "00:00:00",
                "valid_until_0": "2030-01-01",
                "valid_until_1": "00:00:00",
            },
            "after",
        ),  # fmt: skip
    ],
)
def test_promo_form_refuses_bad_values(manager_client, overrides, message):
    response = add_promo(manager_client, **overrides)
    assert message in errors_of(response)
    assert not PromoCode.objects.exists()


def test_codes_are_unique_whatever_their_case(manager_client):
    assert add_promo(manager_client, code="WELCOME").status_code == 302
    response = add_promo(manager_client, code="welcome")
    assert "already exists" in errors_of(response)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromoCode.objects.create(code="Welcome", percent_off=10)


def test_a_discount_leaving_a_price_below_stripes_minimum_is_refused(manager_client):
    make_plan("Cheap", price_amount=100)  # 1.00 USD
    make_plan("Yen", price_amount=500, currency="jpy")
    too_much = add_promo(manager_client, percent_off="60")  # 1.00 USD -> 0.40 USD
    assert "Cheap: 1.00 USD becomes 0.40 USD" in errors_of(too_much)
    assert "0.50 USD" in errors_of(too_much)
    yen = add_promo(manager_client, percent_off="", amount_off="460", currency="jpy")
    assert "Yen: 500 JPY becomes 40 JPY" in errors_of(yen)
    # Free is fine (nothing is charged); so is an amount off in a currency no plan is priced in
    # when it applies to all plans (it discounts none of them).
    assert add_promo(manager_client, code="FREE", percent_off="100").status_code == 302
    assert (
        add_promo(
            manager_client, code="EUR", percent_off="", amount_off="0.99", currency="eur"
        ).status_code
        == 302
    )


def test_an_amount_off_in_a_currency_none_of_the_chosen_plans_has_is_refused(manager_client):
    plan = make_plan()
    response = add_promo(
        manager_client,
        all_plans=None,
        plans=[str(plan.pk)],
        percent_off="",
        amount_off="1.00",
        currency="eur",
    )
    assert "None of the chosen plans is priced in EUR" in errors_of(response)


def test_database_refuses_both_kinds_of_discount_even_without_the_admin():
    with pytest.raises(IntegrityError), transaction.atomic():
        PromoCode.objects.create(code="BOTH", percent_off=10, amount_off=100, currency="usd")
    with pytest.raises(IntegrityError), transaction.atomic():
        PersonalDiscount.objects.create(user_id=uuid.uuid4(), percent_off=None, amount_off=None)


def test_model_clean_of_a_personal_discount():
    discount = PersonalDiscount(user_id=uuid.uuid4(), amount_off=100)
    with pytest.raises(ValidationError, match="needs its currency"):
        discount.full_clean()


def test_support_grants_a_personal_discount(manager_client):
    make_plan("Cheap", price_amount=100)
    user_id = uuid.uuid4()
    form = {
        "user_id": str(user_id),
        "note": "ticket 42",
        "active": "on",
        "percent_off": "50",
        "amount_off": "",
        "currency": "",
        "valid_until_0": "2031-01-01",
        "valid_until_1": "00:00:00",
        "all_plans": "on",
        "plans": [],
    }
    response = manager_client.post(reverse("admin:catalog_personaldiscount_add"), form)
    assert response.status_code == 302
    assert PersonalDiscount.objects.get(user_id=user_id).percent_off == 50
    too_much = manager_client.post(
        reverse("admin:catalog_personaldiscount_add"), {**form, "percent_off": "70"}
    )
    assert "Cheap: 1.00 USD becomes 0.30 USD" in errors_of(too_much)


def test_plan_list_changes_bump_updated_at_and_deletions_leave_tombstones():
    plan = make_plan()
    promo = PromoCode.objects.create(code="A", percent_off=10, all_plans=False)
    discount = PersonalDiscount.objects.create(user_id=uuid.uuid4(), percent_off=10)
    before = promo.updated_at
    promo.plans.add(plan)
    promo.refresh_from_db()
    assert promo.updated_at > before
    before_discount = PersonalDiscount.objects.get(pk=discount.pk).updated_at
    discount.plans.add(plan)
    plan_before = PromoCode.objects.get(pk=promo.pk).updated_at
    plan.delete()  # leaves both lists without an m2m signal: both are bumped
    assert PromoCode.objects.get(pk=promo.pk).updated_at > plan_before
    assert PersonalDiscount.objects.get(pk=discount.pk).updated_at > before_discount
    promo_id, discount_id = promo.pk, discount.pk
    promo.delete()
    discount.delete()
    assert set(DeletionLog.objects.values_list("model", "object_id")) >= {
        ("promo_code", promo_id),
        ("personal_discount", discount_id),
    }


def test_deactivate_action_moves_updated_at(manager_client):
    promo = PromoCode.objects.create(code="OLD", percent_off=10)
    before = promo.updated_at
    response = manager_client.post(
        reverse("admin:catalog_promocode_changelist"),
        {"action": "deactivate", "_selected_action": [str(promo.pk)]},
        follow=True,
    )
    assert "1 promo code(s) deactivated." in response.content.decode()
    promo.refresh_from_db()
    assert promo.active is False and promo.updated_at > before


@pytest.fixture
def billing(settings):
    fake = FakeBilling(settings.SERVICE_JWT_SECRET)
    settings.BILLING_URL = fake.url
    yield fake
    fake.close()


def test_redemptions_page_lists_what_billing_recorded(manager_client, billing):
    promo = PromoCode.objects.create(code="WELCOME", percent_off=20, max_redemptions=10)
    user_id = str(uuid.uuid4())
    billing.redemptions[str(promo.pk)] = {
        "times_redeemed": 1,
        "max_redemptions": 10,
        "items": [
            {
                "id": str(uuid.uuid4()),
                "promo_code_id": str(promo.pk),
                "code": "welcome",
                "user_id": user_id,
                "payment_id": str(uuid.uuid4()),
                "subscription_id": str(uuid.uuid4()),
                "status": "confirmed",
                "created_at": "2026-11-20T10:00:00+00:00",
                "updated_at": "2026-11-20T10:01:00+00:00",
            }
        ],
    }
    change = manager_client.get(reverse("admin:catalog_promocode_change", args=[promo.pk]))
    url = reverse("admin:catalog_promocode_redemptions", args=[promo.pk])
    assert url in change.content.decode()
    page = manager_client.get(url).content.decode()
    assert "Used: <strong>1</strong>" in page and "of 10" in page
    assert user_id in page and "confirmed" in page
    assert "A refund does not" in page
    assert billing.requests[-1]["claims"]["iss"] == "admin"


def test_redemptions_page_before_etl_copied_the_code(manager_client, billing):
    promo = PromoCode.objects.create(code="NEW", percent_off=20)
    page = manager_client.get(reverse("admin:catalog_promocode_redemptions", args=[promo.pk]))
    assert "has not received this code yet" in page.content.decode()


def test_redemptions_page_when_billing_is_down(manager_client, billing, settings):
    promo = PromoCode.objects.create(code="DOWN", percent_off=20)
    settings.BILLING_URL = "http://127.0.0.1:9"  # nothing listens there
    page = manager_client.get(reverse("admin:catalog_promocode_redemptions", args=[promo.pk]))
    assert "billing_unavailable" in page.content.decode()


def test_promo_code_command_creates_updates_and_refuses(capsys):
    from django.core.management import CommandError, call_command

    plan = make_plan("Cheap", price_amount=100)
    call_command("promo_code", "TEN", "--percent-off", "10", "--max-redemptions", "10")
    promo = PromoCode.objects.get(code="TEN")
    assert (promo.percent_off, promo.max_redemptions, promo.all_plans) == (10, 10, True)
    call_command("promo_code", "TEN", "--percent-off", "10", "--max-redemptions", "10")
    assert "unchanged" in capsys.readouterr().out
    call_command("promo_code", "TEN", "--percent-off", "20", "--plan", str(plan.pk))
    promo.refresh_from_db()
    assert (promo.percent_off, promo.all_plans, list(promo.plans.all())) == (20, False, [plan])
    with pytest.raises(CommandError, match="Cheap: 1.00 USD becomes 0.40 USD"):
        call_command("promo_code", "SIXTY", "--percent-off", "60")
    call_command("promo_code", "THREE", "--amount-off", "0.30", "--currency", "usd")
    assert PromoCode.objects.get(code="THREE").amount_off == 30  # 1.00 - 0.30 = 0.70 USD
    assert not PromoCode.objects.filter(code="SIXTY").exists()
