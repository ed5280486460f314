"""Liveness, readiness and /metrics (docs/contracts.md, "Health, readiness, metrics")."""

from __future__ import annotations

import uuid

import httpx
import pytest
from billing.main import create_app
from conftest import as_service, as_user, make_settings
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests(samples, route: str, status: str, method: str = "GET") -> float:
    labels = tuple(sorted({"route": route, "method": method, "status": status}.items()))
    return samples.get(("billing_http_request_duration_seconds_count", labels), 0)


def access_checks(samples, source: str, allowed: str) -> float:
    labels = tuple(sorted({"source": source, "allowed": allowed}.items()))
    return samples.get(("billing_access_checks_total", labels), 0)


async def test_liveness_and_readiness(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "redis": "ok"},
    }


async def test_not_ready_without_redis_yet_alive(database_url, fake_pay_api):
    broken = create_app(
        make_settings(database_url, fake_pay_api.url, REDIS_URL="redis://127.0.0.1:1/0"),
        configure_logs=False,
    )
    transport = httpx.ASGITransport(app=broken)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        assert (await c.get("/health")).status_code == 200
        ready = await c.get("/health/ready")
    await broken.state.resources.aclose()
    assert ready.status_code == 503
    assert ready.json()["code"] == "not_ready"
    assert ready.json()["details"] == {"database": "ok", "migrations": "ok", "redis": "unavailable"}


async def test_not_ready_without_its_database(fake_pay_api):
    broken = create_app(
        make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", fake_pay_api.url),
        configure_logs=False,
    )
    transport = httpx.ASGITransport(app=broken)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        ready = await c.get("/health/ready")
        samples = await scrape(c)  # /metrics still answers, and says the database is down
    await broken.state.resources.aclose()
    assert ready.status_code == 503
    assert ready.json()["details"]["database"] == "unavailable"
    assert samples[("billing_database_up", ())] == 0


async def test_not_ready_while_the_schema_is_behind_the_code(client, resources):
    async with resources.engine.begin() as connection:
        head = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        await connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        ready = await client.get("/health/ready")
    finally:
        async with resources.engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
    assert ready.status_code == 503
    assert ready.json()["details"]["migrations"] == "behind"
    assert (await client.get("/health/ready")).status_code == 200


async def test_requests_are_counted_by_route_template_and_status(client, billing):
    before = await scrape(client)
    user = uuid.uuid4()
    await client.get("/api/v1/plans", headers=as_user(user))
    await client.get(f"/api/v1/payments/{uuid.uuid4()}", headers=as_user(user))
    await client.get(f"/no/such/path/{uuid.uuid4()}")
    after = await scrape(client)

    assert requests(after, "/api/v1/plans", "200") == requests(before, "/api/v1/plans", "200") + 1
    template = "/api/v1/payments/{payment_id}"
    assert requests(after, template, "404") == requests(before, template, "404") + 1
    assert requests(after, "unmatched", "404") == requests(before, "unmatched", "404") + 1
    # No label carries an id.
    assert not [key for key in after if any(str(user) in value for _, value in key[1])]


async def test_access_decisions_by_source_give_the_cache_hit_ratio(client, billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    before = await scrape(client)

    await billing.access(user, film)  # computed, then cached
    await billing.access(user, film)  # from the cache, before FastAPI routes it
    denied = await client.get(
        f"/internal/v1/access?user_id={uuid.uuid4()}&film_id={film}", headers=as_service("movies")
    )
    assert denied.json()["allowed"] is False
    after = await scrape(client)

    for source, allowed, more in (("database", "true", 1), ("cache", "true", 1)):
        assert (
            access_checks(after, source, allowed) == access_checks(before, source, allowed) + more
        )
    assert (
        access_checks(after, "database", "false") == access_checks(before, "database", "false") + 1
    )
    # The cached answer still counts under its route template.
    template = "/api/v1/access/films/{film_id}"
    assert requests(after, template, "200") == requests(before, template, "200") + 2


async def test_state_of_payments_outbox_and_reconciler(client, billing, resources):
    plan_id = await billing.put_plan()
    purchase = await billing.buy(uuid.uuid4(), plan_id)
    payment_id = purchase.json()["payment"]["id"]
    async with resources.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE payments SET next_check_at = now() - interval '90 seconds',"
                " expires_at = now() - interval '1 second' WHERE id = :id"
            ),
            {"id": payment_id},
        )
    try:
        samples = await scrape(client)
        pending = await billing.scalar("SELECT count(*) FROM payments WHERE status = 'pending'")
        assert samples[("billing_database_up", ())] == 1
        assert samples[("billing_payments", (("status", "pending"),))] == pending
        assert samples[("billing_open_payments_past_deadline", ())] >= 1
        assert samples[("billing_reconciler_due", (("object", "payment"),))] >= 1
        assert samples[("billing_reconciler_oldest_due_seconds", ())] >= 90
        assert ("billing_outbox_backlog", ()) in samples
        assert ("billing_outbox_oldest_age_seconds", ()) in samples
    finally:
        async with resources.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE payments SET status = 'canceled', next_check_at = now() + interval '1 day'"
                    " WHERE id = :id"
                ),
                {"id": payment_id},
            )
