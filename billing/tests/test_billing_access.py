"""Access decisions: paid period of a covering plan, free films, invalidation (the in-memory cache
itself: test_billing_access_cache.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from conftest import as_service, as_user, bearer, user_token

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_covered_film_needs_a_paid_period_free_film_is_free(billing):
    film, free_film = uuid.uuid4(), uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    denied = await billing.access(user, film)
    assert denied == {
        "allowed": False,
        "reason": "no_subscription",
        "until": None,
        "film_id": str(film),
        "user_id": str(user),
    }
    assert await billing.access(user, free_film) == {
        "allowed": True,
        "reason": "free",
        "until": None,
        "film_id": str(free_film),
        "user_id": str(user),
    }

    purchase = await billing.paid_subscription(user, plan_id)
    allowed = await billing.access(user, film)
    assert allowed["allowed"] is True and allowed["reason"] == "subscription"
    sub_end = await billing.scalar(
        "SELECT current_period_end FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    assert datetime.fromisoformat(allowed["until"]) == sub_end
    # Another user is still denied.
    assert (await billing.access(uuid.uuid4(), film))["allowed"] is False


async def test_cache_is_invalidated_by_a_payment_and_by_catalog_changes(billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    assert (await billing.access(user, film))["allowed"] is False  # cached "denied"
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["allowed"] is True  # the payment dropped it

    # A free film becomes covered by a new plan: cached "free" decisions are dropped for all.
    newly_covered = uuid.uuid4()
    assert (await billing.access(user, newly_covered))["reason"] == "free"
    await billing.put_plan(film_ids=[str(newly_covered)])
    assert (await billing.access(user, newly_covered))["reason"] == "no_subscription"


async def test_all_films_plan_covers_everything_and_deactivation_keeps_paid_access(billing):
    plan_id = await billing.put_plan(all_films=True)
    user, film = uuid.uuid4(), uuid.uuid4()
    assert (await billing.access(user, film))["reason"] == "no_subscription"
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["reason"] == "subscription"
    await billing.client.delete(f"/internal/v1/plans/{plan_id}", headers=as_service("etl"))
    assert (await billing.access(user, film))["reason"] == "subscription"


async def test_internal_access_for_the_movie_service(billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    url = f"/internal/v1/access?user_id={user}&film_id={film}"
    response = await billing.client.get(url, headers=as_service("movies"))
    assert response.status_code == 200
    assert response.json()["allowed"] is True
    assert response.json()["user_id"] == str(user)
    for headers, status, code in (
        (as_service("etl"), 403, "forbidden"),
        (as_user(user), 401, "token_invalid"),
        ({}, 401, "not_authenticated"),
    ):
        refused = await billing.client.get(url, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    for query in (f"user_id={user}", f"user_id=x&film_id={film}", f"user_id={user}&film_id=y"):
        bad = await billing.client.get(f"/internal/v1/access?{query}", headers=as_service("movies"))
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")


async def test_user_access_endpoint_refuses_bad_input(billing):
    user = uuid.uuid4()
    bad = await billing.client.get("/api/v1/access/films/not-a-uuid", headers=as_user(user))
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    for headers, code in (
        ({}, "not_authenticated"),
        (bearer(user_token(user, exp=1)), "token_expired"),
        (as_service("movies"), "token_invalid"),
    ):
        refused = await billing.client.get(f"/api/v1/access/films/{uuid.uuid4()}", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, code)


async def test_a_withdrawn_film_is_allowed_to_nobody(billing):
    film = uuid.uuid4()
    put = await billing.client.put(
        f"/internal/v1/films/{film}",
        json={"title": "Metropolis", "active": True},
        headers=as_service("etl"),
    )
    assert put.status_code == 200
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["reason"] == "subscription"  # cached "allowed"

    deleted = await billing.client.delete(f"/internal/v1/films/{film}", headers=as_service("etl"))
    assert deleted.status_code == 200 and deleted.json()["changed"] is True
    withdrawn = await billing.access(user, film)
    assert withdrawn["allowed"] is False and withdrawn["reason"] == "film_unavailable"
    stranger = await billing.access(uuid.uuid4(), film)
    assert stranger["allowed"] is False and stranger["reason"] == "film_unavailable"
