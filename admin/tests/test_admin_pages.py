import pytest
from catalog.models import Film, Plan
from django.urls import reverse

pytestmark = pytest.mark.django_db


def plan_form(**overrides) -> dict:
    data = {
        "name": "Family",
        "description": "Everything for the family",
        "price": "14.99",
        "currency": "eur",
        "period_count": "1",
        "period_unit": "month",
        "refund_window_days": "14",
        "active": "on",
        "films": [],
    }
    data.update(overrides)
    return data


def test_health_answers_json(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_says_the_database_answers_and_migrations_are_applied(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_probes_answer_any_host_header(client):
    # Container runtimes and nginx probe with their own Host; ALLOWED_HOSTS must not refuse them.
    response = client.get("/health/ready", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    assert client.get("/admin/", HTTP_HOST="10.0.0.7:8000").status_code == 400


def test_readiness_is_503_with_a_migration_pending(client, settings):
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    last = recorder.migration_qs.filter(app="catalog").order_by("-id").first()
    last.delete()
    try:
        response = client.get("/health/ready")
    finally:
        recorder.record_applied(last.app, last.name)
    assert response.status_code == 503
    assert response.json()["code"] == "not_ready"
    assert response.json()["details"]["migrations"] == "pending"


def test_manager_logs_in_through_the_login_form(client, manager):
    response = client.post(
        reverse("admin:login"),
        {"username": "manager", "password": "pw-manager-1", "next": "/admin/"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.context["user"].is_authenticated
    # Landed on the admin's index (not the login form again), which lists the catalog's models.
    assert response.redirect_chain == [("/admin/", 302)]
    assert response.resolver_match.view_name == "admin:index"
    page = response.content.decode()
    assert reverse("admin:catalog_plan_changelist") in page
    assert reverse("admin:catalog_film_changelist") in page


def test_anonymous_user_is_sent_to_the_login_page(client):
    response = client.get(reverse("admin:catalog_plan_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_static_files_are_served(client):
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


def test_create_a_plan_with_films_through_the_add_form(manager_client):
    matrix = Film.objects.create(title="The Matrix")
    inception = Film.objects.create(title="Inception")
    Film.objects.create(title="Nosferatu (1922)")

    response = manager_client.post(
        reverse("admin:catalog_plan_add"),
        plan_form(films=[str(matrix.pk), str(inception.pk)]),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    plan = Plan.objects.get(name="Family")
    assert (plan.price_amount, plan.currency, plan.period_unit) == (1499, "eur", "month")
    assert set(plan.films.all()) == {matrix, inception}


def test_plan_list_shows_formatted_prices(manager_client):
    Plan.objects.create(name="Premium monthly", price_amount=999, currency="usd", all_films=True)
    response = manager_client.get(reverse("admin:catalog_plan_changelist"))
    assert response.status_code == 200
    assert "9.99 USD" in response.content.decode()


def test_plan_list_search_and_filter(manager_client):
    Plan.objects.create(name="Premium monthly", price_amount=999, all_films=True)
    Plan.objects.create(name="Daily pass", price_amount=99, all_films=True, active=False)
    url = reverse("admin:catalog_plan_changelist")
    assert "Daily pass" not in manager_client.get(url, {"q": "premium"}).content.decode()
    filtered = manager_client.get(url, {"active__exact": "0"}).content.decode()
    assert "Daily pass" in filtered and "Premium monthly" not in filtered


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "0", "The price must be greater than zero."),
        ("price", "-5", "greater than or equal to 0"),
        ("price", "9.999", "EUR prices have 2 decimal places."),
        ("price", "1000000", "larger than one card payment allows"),
        ("price", "ten", "Enter a number."),
        ("currency", "xyz", "Select a valid choice. xyz is not one of the available choices."),
        ("period_count", "0", "A period is at least 1 day or month."),
    ],
)
def test_add_form_shows_errors_for_bad_values(manager_client, field, value, message):
    film = Film.objects.create(title="The Matrix")
    response = manager_client.post(
        reverse("admin:catalog_plan_add"), plan_form(films=[str(film.pk)], **{field: value})
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in text for text in errors[field]), errors
    assert not Plan.objects.exists()


def test_add_form_refuses_all_films_together_with_a_film_list(manager_client):
    film = Film.objects.create(title="The Matrix")
    response = manager_client.post(
        reverse("admin:catalog_plan_add"), plan_form(all_films="on", films=[str(film.pk)])
    )
    assert response.status_code == 200
    assert "covers all films lists no films" in str(response.context["adminform"].form.errors)
    assert not Plan.objects.exists()


def test_add_form_refuses_an_active_plan_covering_nothing(manager_client):
    response = manager_client.post(reverse("admin:catalog_plan_add"), plan_form())
    assert response.status_code == 200
    assert "must cover something" in str(response.context["adminform"].form.errors)


def test_deactivate_action_moves_updated_at(manager_client):
    plan = Plan.objects.create(name="Old", price_amount=100, all_films=True)
    before = plan.updated_at
    response = manager_client.post(
        reverse("admin:catalog_plan_changelist"),
        {"action": "deactivate", "_selected_action": [str(plan.pk)]},
    )
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.active is False
    assert plan.updated_at > before


def test_a_yen_price_is_typed_in_yen_and_has_no_decimals(manager_client):
    film = Film.objects.create(title="The Matrix")
    url = reverse("admin:catalog_plan_add")
    refused = manager_client.post(url, plan_form(films=[str(film.pk)], currency="jpy", price="9.5"))
    assert "JPY prices have no decimal places (it has no minor unit)." in str(
        refused.context["adminform"].form.errors["price"]
    )
    response = manager_client.post(
        url, plan_form(films=[str(film.pk)], currency="jpy", price="1000")
    )
    assert response.status_code == 302
    plan = Plan.objects.get(name="Family")
    assert (plan.price_amount, plan.currency, plan.price_display) == (1000, "jpy", "1,000 JPY")


def test_the_change_form_shows_the_price_in_units_and_a_new_price_needs_a_reason(manager_client):
    plan = Plan.objects.create(name="Premium", price_amount=999, currency="usd", all_films=True)
    url = reverse("admin:catalog_plan_change", args=[plan.pk])
    page = manager_client.get(url).content.decode()
    assert 'name="price" value="9.99"' in page
    form = plan_form(name="Premium", currency="usd", all_films="on", price="12.50")
    refused = manager_client.post(url, form)
    assert refused.status_code == 200
    assert "Say why the price or currency changes." in str(
        refused.context["adminform"].form.errors["change_reason"]
    )
    plan.refresh_from_db()
    assert plan.price_amount == 999
    saved = manager_client.post(url, {**form, "change_reason": "New season pricing"})
    assert saved.status_code == 302
    plan.refresh_from_db()
    assert plan.price_amount == 1250
    # Same price again, another field changed: no reason needed.
    renamed = manager_client.post(url, {**form, "name": "Premium+", "price": "12.5"})
    assert renamed.status_code == 302
