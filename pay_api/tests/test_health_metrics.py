"""Liveness, readiness and /metrics (docs/contracts.md, "Health, readiness, metrics")."""

import uuid

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from pay_api import create_app

from .conftest import auth, make_settings


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def requests(samples, route: str, status: str, method: str = "GET") -> float:
    labels = tuple(sorted({"route": route, "method": method, "status": status}.items()))
    return samples.get(("pay_api_http_request_duration_seconds_count", labels), 0)


def test_liveness_and_readiness(client):
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_not_ready_without_its_database_yet_alive(localstripe, billing_recorder):
    settings = make_settings(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", localstripe, billing_recorder.url
    )
    broken = create_app(settings).test_client()
    assert broken.get("/health").status_code == 200
    ready = broken.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["code"] == "not_ready"
    assert ready.json["details"] == {"database": "unavailable", "migrations": "unknown"}
    assert scrape(broken)[("pay_api_database_up", ())] == 0


def test_not_ready_while_the_schema_is_behind_the_code(client, db):
    with db.engine.begin() as connection:
        head = connection.scalar(text("SELECT version_num FROM alembic_version"))
        connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        ready = client.get("/health/ready")
    finally:
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})
    assert ready.status_code == 503
    assert ready.json["details"]["migrations"] == "behind"


def test_requests_by_url_rule_and_status_and_the_state(client, api):
    before = scrape(client)
    payment = api.create_payment()
    client.get(f"/internal/v1/payments/{uuid.uuid4()}", headers=auth())
    client.get(f"/no/such/{uuid.uuid4()}")
    after = scrape(client)

    rule = "/internal/v1/payments/<uuid:payment_id>"
    assert requests(after, rule, "404") == requests(before, rule, "404") + 1
    assert requests(after, "unmatched", "404") == requests(before, "unmatched", "404") + 1
    assert not [key for key in after if any(payment["payment_id"] in v for _, v in key[1])]
    assert after[("pay_api_database_up", ())] == 1
    assert after[("pay_api_payments", (("status", "pending"),))] >= 1
    assert ("pay_api_outbox_backlog", ()) in after
    assert ("pay_api_outbox_oldest_age_seconds", ()) in after
    assert ("pay_api_refunds_pending", ()) in after
