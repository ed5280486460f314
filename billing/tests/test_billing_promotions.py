"""Promo codes and personal discounts in billing: etl's upserts, the price preview and each of
its refusals, and the admin's redemption listing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import as_service, as_user

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _code() -> str:
    return f"SAVE-{uuid.uuid4().hex[:10]}"


async def put_promo(billing, *, promo_id: uuid.UUID | None = None, **fields: Any) -> dict:
    promo_id = promo_id or uuid.uuid4()
    body = {
        "code": _code(),
        "percent_off": 20,
        "duration": "once",
        "all_plans": True,
        "plan_ids": [],
        "active": True,
        **fields,
    }
    response = await billing.client.put(
        f"/internal/v1/promo-codes/{promo_id}", json=body, headers=as_service("etl")
    )
    assert response.status_code == 200, response.text
    return {**body, "id": promo_id}


async def put_personal(billing, user_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    discount_id = uuid.uuid4()
    body = {"user_id": str(user_id), "percent_off": 50, "all_plans": True, **fields}
    response = await billing.client.put(
        f"/internal/v1/personal-discounts/{discount_id}", json=body, headers=as_service("etl")
    )
    assert response.status_code == 200, response.text
    return discount_id


async def preview(billing, user_id, plan_id, code: str | None = None):
    params = {"promo_code": code} if code is not None else {}
    return await billing.client.get(
        f"/api/v1/plans/{plan_id}/price", params=params, headers=as_user(user_id)
    )


async def price_of(billing, user_id, plan_id, code: str | None = None) -> dict:
    response = await preview(billing, user_id, plan_id, code)
    assert response.status_code == 200, response.text
    return response.json()


async def refusal(billing, user_id, plan_id, code: str) -> str:
    response = await preview(billing, user_id, plan_id, code)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"]
    return body["code"]


# --- etl's upserts -----------------------------------------------------------------------------
async def test_promo_upsert_is_idempotent_and_delete_deactivates(billing):
    promo = await put_promo(billing)
    url, etl = f"/internal/v1/promo-codes/{promo['id']}", as_service("etl")
    body = {k: v for k, v in promo.items() if k != "id"}
    again = await billing.client.put(url, json=body, headers=etl)
    assert again.json() == {"id": str(promo["id"]), "changed": False}
    changed = await billing.client.put(url, json={**body, "percent_off": 25}, headers=etl)
    assert changed.json()["changed"] is True
    assert (await billing.client.delete(url, headers=etl)).json()["changed"] is True
    assert (await billing.client.delete(url, headers=etl)).json()["changed"] is False
    assert await billing.count("promo_codes", "id = :id AND NOT active", id=promo["id"]) == 1
    plan_id = await billing.put_plan()
    assert await refusal(billing, uuid.uuid4(), plan_id, promo["code"]) == "promo_code_unknown"


async def test_a_code_made_again_under_a_new_id_takes_the_code_over(billing):
    old = await put_promo(billing, percent_off=10)
    new = await put_promo(billing, code=old["code"].lower(), percent_off=30)
    plan_id = await billing.put_plan(price_amount=1000)
    assert (await price_of(billing, uuid.uuid4(), plan_id, old["code"]))["net"] == 700
    assert await billing.count("promo_codes", "id = :id AND active", id=old["id"]) == 0
    assert await billing.count("promo_codes", "id = :id AND active", id=new["id"]) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"percent_off": 20, "amount_off": 100, "currency": "usd"},
        {"percent_off": None},
        {"percent_off": None, "amount_off": 100},  # an amount needs its currency
        {"percent_off": 0},
        {"percent_off": 101},
        {"duration": "repeating"},  # without duration_periods
        {"duration": "once", "duration_periods": 3},
        {"code": "has spaces"},
        {"code": ""},
        {"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
        {"max_redemptions": 0},
        {"unexpected": 1},
    ],
)
async def test_bad_promo_bodies_are_refused_and_write_nothing(billing, change):
    before = await billing.count("promo_codes")
    body = {"code": _code(), "percent_off": 20, "duration": "once", **change}
    response = await billing.client.put(
        f"/internal/v1/promo-codes/{uuid.uuid4()}", json=body, headers=as_service("etl")
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert await billing.count("promo_codes") == before


async def test_only_etl_may_push_promotions(billing):
    response = await billing.client.put(
        f"/internal/v1/promo-codes/{uuid.uuid4()}",
        json={"code": _code(), "percent_off": 5},
        headers=as_service("movies"),
    )
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


async def test_personal_discount_upsert_and_delete(billing):
    user_id = uuid.uuid4()
    plan_id = await billing.put_plan(price_amount=1000)
    discount_id = await put_personal(billing, user_id, percent_off=25)
    assert (await price_of(billing, user_id, plan_id))["net"] == 750
    assert (await price_of(billing, uuid.uuid4(), plan_id))["net"] == 1000  # someone else
    deleted = await billing.client.delete(
        f"/internal/v1/personal-discounts/{discount_id}", headers=as_service("etl")
    )
    assert deleted.json() == {"id": str(discount_id), "changed": True}
    assert (await price_of(billing, user_id, plan_id))["net"] == 1000


# --- the preview -------------------------------------------------------------------------------
async def test_preview_without_a_code_is_the_plan_price(billing):
    plan_id = await billing.put_plan(price_amount=999)
    assert await price_of(billing, uuid.uuid4(), plan_id) == {
        "plan_id": str(plan_id),
        "currency": "usd",
        "gross": 999,
        "discount": 0,
        "net": 999,
        "promo_code": None,
        "discount_source": None,
        "renewals": [
            {"from_period": 2, "until_period": None, "gross": 999, "discount": 0, "net": 999}
        ],
    }


async def test_preview_with_a_code_shows_the_first_payment_and_the_renewals(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    once = await put_promo(billing, percent_off=20, duration="once")
    body = await price_of(billing, uuid.uuid4(), plan_id, once["code"].lower())
    assert (body["gross"], body["discount"], body["net"]) == (1000, 200, 800)
    assert (body["promo_code"], body["discount_source"]) == (once["code"], "promo_code")
    assert body["renewals"] == [
        {"from_period": 2, "until_period": None, "gross": 1000, "discount": 0, "net": 1000}
    ]

    repeating = await put_promo(
        billing, amount_off=300, currency="usd", percent_off=None, duration="repeating",
        duration_periods=3,
    )  # fmt: skip
    body = await price_of(billing, uuid.uuid4(), plan_id, f"  {repeating['code']}  ")
    assert body["net"] == 700
    assert body["renewals"] == [
        {"from_period": 2, "until_period": 3, "gross": 1000, "discount": 300, "net": 700},
        {"from_period": 4, "until_period": None, "gross": 1000, "discount": 0, "net": 1000},
    ]

    forever = await put_promo(billing, percent_off=100, duration="forever")
    body = await price_of(billing, uuid.uuid4(), plan_id, forever["code"])
    assert (body["net"], body["renewals"][0]["net"], body["renewals"][0]["until_period"]) == (
        0,
        0,
        None,
    )


async def test_personal_discount_lasts_while_valid_and_the_better_discount_wins(billing):
    user_id = uuid.uuid4()
    plan_id = await billing.put_plan(price_amount=1000, period_unit="day", period_count=30)
    valid_until = datetime.now(UTC) + timedelta(days=45)  # covers periods 1 and 2
    await put_personal(billing, user_id, percent_off=50, valid_until=valid_until.isoformat())
    body = await price_of(billing, user_id, plan_id)
    assert (body["net"], body["discount_source"]) == (500, "personal_discount")
    assert body["renewals"] == [
        {"from_period": 2, "until_period": 2, "gross": 1000, "discount": 500, "net": 500},
        {"from_period": 3, "until_period": None, "gross": 1000, "discount": 0, "net": 1000},
    ]
    # A smaller promo code loses to the personal discount; it is still named (it is valid).
    small = await put_promo(billing, percent_off=10, duration="forever")
    body = await price_of(billing, user_id, plan_id, small["code"])
    assert (body["net"], body["discount_source"], body["promo_code"]) == (
        500,
        "personal_discount",
        small["code"],
    )
    assert body["renewals"][-1]["net"] == 900  # the code outlasts the personal discount
    # An expired or inactive personal discount does nothing.
    other = uuid.uuid4()
    await put_personal(billing, other, valid_until="2020-01-01T00:00:00Z")
    await put_personal(billing, other, active=False)
    assert (await price_of(billing, other, plan_id))["net"] == 1000


async def test_personal_discount_for_some_plans_only(billing):
    user_id = uuid.uuid4()
    covered = await billing.put_plan(price_amount=1000)
    other = await billing.put_plan(price_amount=1000)
    await put_personal(billing, user_id, all_plans=False, plan_ids=[str(covered)])
    assert (await price_of(billing, user_id, covered))["net"] == 500
    assert (await price_of(billing, user_id, other))["net"] == 1000


# --- refusals ----------------------------------------------------------------------------------
async def test_unknown_code(billing):
    plan_id = await billing.put_plan()
    assert await refusal(billing, uuid.uuid4(), plan_id, "NO-SUCH-CODE") == "promo_code_unknown"


async def test_expired_and_not_yet_valid_codes(billing):
    plan_id = await billing.put_plan()
    now = datetime.now(UTC)
    expired = await put_promo(billing, valid_until=(now - timedelta(minutes=1)).isoformat())
    future = await put_promo(billing, valid_from=(now + timedelta(days=1)).isoformat())
    current = await put_promo(
        billing,
        valid_from=(now - timedelta(days=1)).isoformat(),
        valid_until=(now + timedelta(days=1)).isoformat(),
    )
    user = uuid.uuid4()
    assert await refusal(billing, user, plan_id, expired["code"]) == "promo_code_expired"
    assert await refusal(billing, user, plan_id, future["code"]) == "promo_code_not_yet_valid"
    assert (await price_of(billing, user, plan_id, current["code"]))["discount"] > 0


async def test_code_not_for_this_plan(billing):
    covered = await billing.put_plan(price_amount=1000)
    other = await billing.put_plan(price_amount=1000)
    euros = await billing.put_plan(price_amount=1000, currency="eur")
    some = await put_promo(billing, all_plans=False, plan_ids=[str(covered)])
    dollars_off = await put_promo(billing, percent_off=None, amount_off=100, currency="usd")
    user = uuid.uuid4()
    assert (await price_of(billing, user, covered, some["code"]))["net"] == 800
    assert await refusal(billing, user, other, some["code"]) == "promo_code_not_for_plan"
    assert await refusal(billing, user, euros, dollars_off["code"]) == "promo_code_not_for_plan"


async def test_first_purchase_only(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    other_plan = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, first_purchase_only=True)
    newcomer, customer = uuid.uuid4(), uuid.uuid4()
    await billing.paid_subscription(customer, other_plan)
    assert (await price_of(billing, newcomer, plan_id, promo["code"]))["net"] == 800
    assert (
        await refusal(billing, customer, plan_id, promo["code"]) == "promo_code_first_purchase_only"
    )


async def test_below_minimum_charge_is_refused_at_preview(billing):
    plan_id = await billing.put_plan(price_amount=100)
    promo = await put_promo(billing, percent_off=60)  # 100 - 60 = 40 cents < 50
    free = await put_promo(billing, percent_off=100)
    user = uuid.uuid4()
    response = await preview(billing, user, plan_id, promo["code"])
    assert (response.status_code, response.json()["code"]) == (422, "amount_below_minimum")
    assert "$0.40" in response.json()["message"]
    assert (await price_of(billing, user, plan_id, free["code"]))["net"] == 0


async def test_preview_of_an_unknown_or_inactive_plan(billing):
    response = await preview(billing, uuid.uuid4(), uuid.uuid4())
    assert (response.status_code, response.json()["code"]) == (404, "plan_not_found")
    plan_id = await billing.put_plan(active=False)
    response = await preview(billing, uuid.uuid4(), plan_id)
    assert (response.status_code, response.json()["code"]) == (409, "plan_inactive")
    too_long = await preview(billing, uuid.uuid4(), plan_id, "X" * 65)
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_error")


# --- the admin's listing -------------------------------------------------------------------------
async def test_redemptions_listing_for_the_admin(billing):
    promo = await put_promo(billing, max_redemptions=5)
    url = f"/internal/v1/promo-codes/{promo['id']}/redemptions"
    listed = await billing.client.get(url, headers=as_service("admin"))
    assert listed.json() == {
        "promo_code_id": str(promo["id"]),
        "times_redeemed": 0,
        "max_redemptions": 5,
        "items": [],
        "total": 0,
    }
    missing = await billing.client.get(
        f"/internal/v1/promo-codes/{uuid.uuid4()}/redemptions", headers=as_service("admin")
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "promo_code_not_found")
    forbidden = await billing.client.get(url, headers=as_service("etl"))
    assert forbidden.status_code == 403
