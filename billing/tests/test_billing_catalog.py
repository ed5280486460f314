"""etl's upserts of films and plans: idempotent, `changed` flag, deactivation never deletes."""

from __future__ import annotations

import uuid

import pytest
from conftest import as_service, as_user

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_film_upsert_is_idempotent_and_delete_deactivates(billing):
    film_id = uuid.uuid4()
    url, etl = f"/internal/v1/films/{film_id}", as_service("etl")
    first = await billing.client.put(url, json={"title": "Alien", "active": True}, headers=etl)
    assert first.json() == {"id": str(film_id), "changed": True}
    again = await billing.client.put(url, json={"title": "Alien", "active": True}, headers=etl)
    assert again.json() == {"id": str(film_id), "changed": False}
    renamed = await billing.client.put(url, json={"title": "Aliens", "active": True}, headers=etl)
    assert renamed.json()["changed"] is True
    deleted = await billing.client.delete(url, headers=etl)
    assert deleted.json() == {"id": str(film_id), "changed": True}
    assert (await billing.client.delete(url, headers=etl)).json()["changed"] is False
    row = await billing.scalar(
        "SELECT title || ':' || active FROM films WHERE id = :id", id=film_id
    )
    assert row == "Aliens:false"


async def test_plan_upsert_lists_only_active_plans_and_keeps_deactivated_rows(billing):
    films = sorted([uuid.uuid4(), uuid.uuid4()])
    plan_id = await billing.put_plan(
        name="Films 2", film_ids=[str(f) for f in films], price_amount=1500
    )
    same = await billing.client.put(
        f"/internal/v1/plans/{plan_id}",
        json={
            "name": "Films 2",
            "description": "All of it",
            "price_amount": 1500,
            "currency": "USD",
            "period_unit": "month",
            "period_count": 1,
            "refund_window_days": 14,
            "active": True,
            "all_films": False,
            "film_ids": [str(f) for f in reversed(films)],
        },
        headers=as_service("etl"),
    )
    assert same.json() == {"id": str(plan_id), "changed": False}

    listed = (await billing.client.get("/api/v1/plans", headers=as_user(uuid.uuid4()))).json()
    plan = next(p for p in listed["items"] if p["id"] == str(plan_id))
    assert plan == {
        "id": str(plan_id),
        "name": "Films 2",
        "description": "All of it",
        "price": {"amount": 1500, "currency": "usd"},
        "period": {"unit": "month", "count": 1},
        "refund_window_days": 14,
        "all_films": False,
        "film_ids": [str(f) for f in films],
    }
    assert listed["total"] == len(listed["items"])

    # Changing the covered films is a change; dropping one removes only that link.
    await billing.put_plan(
        plan_id=plan_id, name="Films 2", film_ids=[str(films[0])], price_amount=1500
    )
    assert await billing.count("plan_films", "plan_id = :p", p=plan_id) == 1

    deleted = await billing.client.delete(
        f"/internal/v1/plans/{plan_id}", headers=as_service("etl")
    )
    assert deleted.json() == {"id": str(plan_id), "changed": True}
    listed = (await billing.client.get("/api/v1/plans", headers=as_user(uuid.uuid4()))).json()
    assert str(plan_id) not in {p["id"] for p in listed["items"]}
    assert await billing.count("plans", "id = :p AND NOT active", p=plan_id) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"price_amount": 0},
        {"price_amount": 9.99},
        {"currency": "dollars"},
        {"period_unit": "week"},
        {"period_count": 0},
        {"refund_window_days": -1},
        {"film_ids": ["not-a-uuid"]},
        {"name": ""},
        {"unexpected": 1},
    ],
)
async def test_bad_plan_bodies_are_refused_and_write_nothing(billing, change):
    before = await billing.table_counts()
    body = {
        "name": "Bad",
        "description": "",
        "price_amount": 100,
        "currency": "usd",
        "period_unit": "month",
        "period_count": 1,
        "refund_window_days": 3,
        "active": True,
        "all_films": False,
        "film_ids": [],
        **change,
    }
    response = await billing.client.put(
        f"/internal/v1/plans/{uuid.uuid4()}", json=body, headers=as_service("etl")
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await billing.table_counts() == before


async def test_malformed_ids_are_refused(billing):
    before = await billing.table_counts()
    response = await billing.client.put(
        "/internal/v1/films/not-a-uuid", json={"title": "X"}, headers=as_service("etl")
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert await billing.table_counts() == before
