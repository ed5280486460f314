from datetime import timedelta

import pytest
from catalog.models import DeletionLog, Film, Plan
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

pytestmark = pytest.mark.django_db


def make_plan(**overrides) -> Plan:
    fields = {"name": "Basic", "price_amount": 500, "currency": "usd"}
    fields.update(overrides)
    return Plan.objects.create(**fields)


def age(obj) -> None:
    """Move updated_at an hour back, so a bump is visible without waiting."""
    type(obj).objects.filter(pk=obj.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    obj.refresh_from_db()


def test_plan_validation_reports_each_bad_field():
    plan = Plan(name="  ", price_amount=0, currency="XYZ", period_count=0)
    with pytest.raises(ValidationError) as caught:
        plan.full_clean()
    errors = caught.value.message_dict
    assert errors["name"] == ["This field cannot be blank."]
    assert errors["price_amount"] == ["The price must be greater than zero."]
    assert errors["currency"] == ["xyz is not a supported ISO 4217 currency."]
    assert errors["period_count"] == ["A period is at least 1 day or month."]


def test_plan_price_above_a_card_payments_limit_is_refused():
    with pytest.raises(ValidationError, match="larger than one card payment allows"):
        Plan(name="Gold", price_amount=100_000_000, currency="usd").full_clean()


def test_plan_clean_normalises_currency_to_lower_case():
    plan = Plan(name=" Basic ", price_amount=500, currency="EUR")
    plan.full_clean()
    assert (plan.name, plan.currency) == ("Basic", "eur")


def test_database_refuses_a_zero_price_even_without_the_admin():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_plan(price_amount=0)


def test_database_refuses_a_malformed_currency():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_plan(currency="US$")


def test_price_is_shown_in_major_units():
    assert make_plan(price_amount=999, currency="usd").price_display == "9.99 USD"
    assert make_plan(name="Yen", price_amount=500, currency="jpy").price_display == "500 JPY"
    assert (
        make_plan(name="Big", price_amount=123456, currency="eur").price_display == "1,234.56 EUR"
    )


@pytest.mark.parametrize(
    "change", ["add", "remove", "clear", "set", "reverse_add", "reverse_clear"]
)
def test_changing_a_plans_films_bumps_its_updated_at(change):
    matrix = Film.objects.create(title="The Matrix")
    inception = Film.objects.create(title="Inception")
    plan = make_plan()
    plan.films.add(matrix)
    age(plan)
    before = plan.updated_at

    if change == "add":
        plan.films.add(inception)
    elif change == "remove":
        plan.films.remove(matrix)
    elif change == "clear":
        plan.films.clear()
    elif change == "set":
        plan.films.set([inception])
    elif change == "reverse_add":
        inception.plans.add(plan)
    elif change == "reverse_clear":
        matrix.plans.clear()

    plan.refresh_from_db()
    assert plan.updated_at > before


def test_deleting_a_film_leaves_a_tombstone_and_bumps_its_plans():
    film = Film.objects.create(title="Doomed")
    plan = make_plan()
    plan.films.add(film)
    age(plan)
    before = plan.updated_at
    film_id = film.pk

    film.delete()

    plan.refresh_from_db()
    assert plan.updated_at > before
    assert list(plan.films.all()) == []
    assert list(DeletionLog.objects.values_list("model", "object_id")) == [("film", film_id)]


def test_deleting_plans_in_bulk_leaves_a_tombstone_each():
    first, second = make_plan(name="A"), make_plan(name="B")
    Plan.objects.filter(pk__in=[first.pk, second.pk]).delete()
    assert set(DeletionLog.objects.values_list("model", "object_id")) == {
        ("plan", first.pk),
        ("plan", second.pk),
    }


def test_saving_a_film_moves_updated_at():
    film = Film.objects.create(title="Old title")
    age(film)
    before = film.updated_at
    film.title = "New title"
    film.save()
    film.refresh_from_db()
    assert film.updated_at > before
