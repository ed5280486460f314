"""etl copies promo codes and personal discounts like plans: after the plans they name, changes
only, deletions as deactivations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def test_promo_codes_and_personal_discounts_are_copied_after_plans(admin, billing, etl):
    plan = admin.add_plan("Premium monthly")
    until = datetime(2031, 1, 1, tzinfo=UTC)
    promo = admin.add_promo_code(
        "Spring25",
        plans=[plan],
        percent_off=None,
        amount_off=300,
        currency="usd",
        duration="repeating",
        duration_periods=3,
        valid_until=until,
        max_redemptions=10,
        first_purchase_only=True,
    )
    user = str(uuid.uuid4())
    personal = admin.add_personal_discount(user, valid_until=until)

    etl.run_once()

    assert billing.promo_codes[promo] == {
        "code": "Spring25",
        "percent_off": None,
        "amount_off": 300,
        "currency": "usd",
        "duration": "repeating",
        "duration_periods": 3,
        "valid_from": None,
        "valid_until": "2031-01-01T00:00:00+00:00",
        "max_redemptions": 10,
        "max_per_user": 1,
        "first_purchase_only": True,
        "all_plans": False,
        "plan_ids": [plan],
        "active": True,
    }
    assert billing.personal_discounts[personal] == {
        "user_id": user,
        "percent_off": 50,
        "amount_off": None,
        "currency": None,  # the admin's blank currency of a percentage
        "valid_until": "2031-01-01T00:00:00+00:00",
        "note": "support ticket 42",
        "all_plans": True,
        "plan_ids": [],
        "active": True,
    }
    paths = [path for _, path in billing.calls("PUT")]
    assert paths.index(f"/internal/v1/plans/{plan}") < paths.index(
        f"/internal/v1/promo-codes/{promo}"
    )


def test_changes_and_deletions_of_discounts_propagate(admin, billing, etl):
    promo = admin.add_promo_code("WELCOME")
    personal = admin.add_personal_discount(str(uuid.uuid4()))
    etl.run_once()
    billing.requests.clear()

    etl.run_once()
    assert billing.calls() == []  # nothing changed, nothing sent

    admin.update_promo_code(promo, max_redemptions=5)
    admin.delete_personal_discount(personal)
    etl.run_once()
    admin.delete_promo_code(promo)
    etl.run_once()

    assert billing.calls() == [
        ("PUT", f"/internal/v1/promo-codes/{promo}"),
        ("DELETE", f"/internal/v1/personal-discounts/{personal}"),
        ("DELETE", f"/internal/v1/promo-codes/{promo}"),
    ]
    assert billing.promo_codes[promo]["max_redemptions"] == 5
    assert billing.promo_codes[promo]["active"] is False
    assert billing.personal_discounts[personal]["active"] is False
