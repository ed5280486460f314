"""Whatever comes in is a 4xx with a JSON `code` and changes nothing: NUL characters, integers
past the database's range, bodies past the documented size (BILLING_MAX_BODY_BYTES)."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import as_service, as_user

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_BODY = 65536  # the default of BILLING_MAX_BODY_BYTES


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


async def test_nul_characters_in_etl_names_change_nothing(billing):
    film_id, plan_id = uuid.uuid4(), uuid.uuid4()
    before = await billing.table_counts()
    response = await billing.client.put(
        f"/internal/v1/films/{film_id}",
        json={"title": "Ali\u0000en", "active": True},
        headers=as_service("etl"),
    )
    assert_refused(response, 422, "validation_error")
    body = {
        "name": "Pre\u0000mium",
        "description": "x",
        "price_amount": 999,
        "currency": "usd",
        "period_unit": "month",
        "period_count": 1,
        "refund_window_days": 14,
        "active": True,
        "all_films": True,
        "film_ids": [],
    }
    response = await billing.client.put(
        f"/internal/v1/plans/{plan_id}", json=body, headers=as_service("etl")
    )
    assert_refused(response, 422, "validation_error")
    assert await billing.table_counts() == before


async def test_a_nul_in_a_refund_reason_changes_nothing(billing):
    user_id = uuid.uuid4()
    purchase = await billing.paid_subscription(user_id, await billing.put_plan())
    before = await billing.table_counts()
    response = await billing.client.post(
        f"/api/v1/payments/{purchase['payment']['id']}/refund",
        json={"reason": "changed my mind\u0000"},
        headers={**as_user(user_id), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_refused(response, 422, "validation_error")
    assert await billing.table_counts() == before


async def test_a_nul_in_a_query_or_path_is_refused(billing):
    response = await billing.client.get(
        "/internal/v1/customers/search?q=abc%00def", headers=as_service("admin")
    )
    assert_refused(response, 422, "validation_error")
    response = await billing.client.get("/api/v1/payments/%00", headers=as_user(uuid.uuid4()))
    assert_refused(response, 422, "validation_error")


@pytest.mark.parametrize("offset", [2**31, 2**63, 10**30])
async def test_an_offset_past_the_database_range_is_a_validation_error(billing, offset):
    user_id = uuid.uuid4()
    response = await billing.client.get(
        f"/api/v1/payments?offset={offset}", headers=as_user(user_id)
    )
    assert_refused(response, 422, "validation_error")
    response = await billing.client.get(
        f"/internal/v1/payments?offset={offset}", headers=as_service("admin")
    )
    assert_refused(response, 422, "validation_error")


async def test_amounts_past_the_bound_are_validation_errors(billing):
    user_id = uuid.uuid4()
    purchase = await billing.paid_subscription(user_id, await billing.put_plan())
    before = await billing.table_counts()
    response = await billing.client.post(
        f"/internal/v1/payments/{purchase['payment']['id']}/refunds",
        json={"amount": 10**20, "reason": "x", "end_subscription": False},
        headers={**as_service("admin"), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_refused(response, 422, "validation_error")
    response = await billing.event(purchase["payment"], "succeeded", amount=2**63)
    assert_refused(response, 422, "validation_error")
    assert await billing.table_counts() == before


async def test_a_body_past_the_limit_is_413_with_or_without_a_length(billing):
    film_id = uuid.uuid4()
    body = json.dumps({"title": "x" * MAX_BODY, "active": True}).encode()
    response = await billing.client.put(
        f"/internal/v1/films/{film_id}",
        content=body,
        headers={**as_service("etl"), "Content-Type": "application/json"},
    )
    assert_refused(response, 413, "payload_too_large")

    async def chunks():  # no Content-Length: counted while it is read
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await billing.client.put(
        f"/internal/v1/films/{film_id}",
        content=chunks(),
        headers={**as_service("etl"), "Content-Type": "application/json"},
    )
    assert_refused(response, 413, "payload_too_large")
    assert await billing.count("films", "id = :id", id=film_id) == 0


async def test_deeply_nested_json_is_a_client_error(billing):
    depth = 20000
    body = ("[" * depth + "]" * depth).encode()
    response = await billing.client.put(
        f"/internal/v1/films/{uuid.uuid4()}",
        content=body,
        headers={**as_service("etl"), "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"]


async def test_a_literal_backslash_u0000_text_is_not_a_nul(billing):
    """`\\\\u0000` in JSON is the six characters «\\u0000», which PostgreSQL stores fine."""
    film_id = uuid.uuid4()
    response = await billing.client.put(
        f"/internal/v1/films/{film_id}",
        content=b'{"title": "odd \\\\u0000 title", "active": true}',
        headers={**as_service("etl"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
