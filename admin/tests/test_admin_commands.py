import pytest
from catalog.management.commands.load_demo_data import (
    INCEPTION_ID,
    MATRIX_ID,
    NOSFERATU_ID,
    PREMIUM_MONTHLY_ID,
    WELCOME20_ID,
)
from catalog.models import Film, Plan, PromoCode
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.http import HttpRequest

pytestmark = pytest.mark.django_db


def snapshot():
    return (
        sorted(Film.objects.values_list("id", "title", "active", "updated_at")),
        sorted(Plan.objects.values_list("id", "name", "price_amount", "currency", "updated_at")),
        sorted(PromoCode.objects.values_list("id", "code", "percent_off", "updated_at")),
    )


def test_load_demo_data_creates_the_fixed_catalog():
    call_command("load_demo_data")

    assert {f.pk: f.title for f in Film.objects.all()} == {
        MATRIX_ID: "The Matrix",
        INCEPTION_ID: "Inception",
        NOSFERATU_ID: "Nosferatu (1922)",
    }
    plan = Plan.objects.get()
    assert plan.pk == PREMIUM_MONTHLY_ID
    assert (plan.name, plan.price_amount, plan.currency) == ("Premium monthly", 999, "usd")
    assert (plan.period_unit, plan.period_count, plan.refund_window_days) == ("month", 1, 14)
    assert (plan.active, plan.all_films) == (True, False)
    assert set(plan.films.values_list("pk", flat=True)) == {MATRIX_ID, INCEPTION_ID}
    assert not Film.objects.get(pk=NOSFERATU_ID).plans.exists()
    promo = PromoCode.objects.get()
    assert (promo.pk, promo.code, promo.percent_off) == (WELCOME20_ID, "WELCOME20", 20)
    assert (promo.duration, promo.max_per_user, promo.all_plans) == ("once", 1, True)


def test_load_demo_data_twice_touches_nothing():
    call_command("load_demo_data")
    before = snapshot()
    call_command("load_demo_data")
    assert snapshot() == before


def test_load_demo_data_restores_edited_demo_rows():
    call_command("load_demo_data")
    Plan.objects.filter(pk=PREMIUM_MONTHLY_ID).update(price_amount=1)
    Plan.objects.get(pk=PREMIUM_MONTHLY_ID).films.remove(MATRIX_ID)
    Film.objects.filter(pk=NOSFERATU_ID).delete()

    call_command("load_demo_data")

    plan = Plan.objects.get(pk=PREMIUM_MONTHLY_ID)
    assert plan.price_amount == 999
    assert set(plan.films.values_list("pk", flat=True)) == {MATRIX_ID, INCEPTION_ID}
    assert Film.objects.filter(pk=NOSFERATU_ID).exists()


def test_ensure_superuser_creates_then_keeps_the_user(monkeypatch, client):
    monkeypatch.setenv("ADMIN_USERNAME", "boss")
    monkeypatch.setenv("ADMIN_PASSWORD", "first-secret-1")
    call_command("ensure_superuser")
    call_command("ensure_superuser")

    users = get_user_model().objects.filter(username="boss")
    assert users.count() == 1
    user = users.get()
    assert user.is_superuser and user.is_staff and user.is_active
    # django-axes checks logins per request: the test client's login passes one.
    assert client.login(request=HttpRequest(), username="boss", password="first-secret-1")


def test_ensure_superuser_applies_a_changed_password_and_restores_flags(monkeypatch):
    user = get_user_model().objects.create_user("boss", password="old-secret-1", is_active=False)
    monkeypatch.setenv("ADMIN_USERNAME", "boss")
    monkeypatch.setenv("ADMIN_PASSWORD", "new-secret-2")

    call_command("ensure_superuser")

    user.refresh_from_db()
    assert user.check_password("new-secret-2")
    assert user.is_superuser and user.is_staff and user.is_active


def test_ensure_superuser_refuses_without_a_password(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="ADMIN_PASSWORD"):
        call_command("ensure_superuser")
