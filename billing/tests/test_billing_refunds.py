"""Cancel and refund: the refund window, money rules under concurrency, failures that come later."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from conftest import as_service, as_user
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _paid(billing, **plan_fields):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)], **plan_fields)
    user = uuid.uuid4()
    purchase = await billing.paid_subscription(user, plan_id)
    return user, film, purchase


async def _cancel(billing, user, subscription_id):
    return await billing.client.post(
        f"/api/v1/subscriptions/{subscription_id}/cancel", headers=as_user(user)
    )


async def _refund(billing, user, payment_id, key=None):
    headers = {**as_user(user), **({"Idempotency-Key": key} if key else {})}
    return await billing.client.post(f"/api/v1/payments/{payment_id}/refund", headers=headers)


async def _admin_refund(billing, payment_id, key=None, **body):
    headers = {**as_service("admin"), **({"Idempotency-Key": key} if key else {})}
    return await billing.client.post(
        f"/internal/v1/payments/{payment_id}/refunds", json=body, headers=headers
    )


async def test_cancel_within_the_window_refunds_in_full_and_ends_access_now(billing):
    user, film, purchase = await _paid(billing, price_amount=1200)
    payment_id = purchase["payment"]["id"]
    assert (await billing.access(user, film))["allowed"] is True

    response = await _cancel(billing, user, purchase["subscription"]["id"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["action"] == "refunded"
    assert answer["subscription"]["status"] == "refunded"
    assert answer["refund_amount"] == {"amount": 1200, "currency": "usd"}
    assert answer["access_until"] is None
    refund = answer["refund"]
    assert (refund["amount"], refund["status"], refund["payment_id"]) == (
        1200,
        "pending",
        payment_id,
    )
    assert (await billing.access(user, film))["allowed"] is False

    (call,) = [
        c
        for c in billing.fake.calls_to("POST", "/internal/v1/refunds")
        if c.body["payment_id"] == payment_id
    ]
    assert call.body["refund_id"] == refund["id"] and call.body["amount"] == 1200

    # Pending: the money is reserved, the payment not yet "refunded".
    payment = await billing.payment(user, payment_id)
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 1200)
    assert (await billing.refund_event(refund, "succeeded")).json() == {"applied": True}
    payment = await billing.payment(user, payment_id)
    assert payment["status"] == "refunded"
    assert [r["status"] for r in payment["refunds"]] == ["succeeded"]
    kinds = await billing.scalar(
        "SELECT string_agg(kind || ':' || amount, ',' ORDER BY id) FROM ledger_entries WHERE payment_id = :p",
        p=uuid.UUID(payment_id),
    )
    assert kinds == "charge:1200,refund:1200"
    # Canceling again answers the same and does nothing more.
    again = (await _cancel(billing, user, purchase["subscription"]["id"])).json()
    assert again["action"] == "refunded" and again["refund"]["id"] == refund["id"]
    assert await billing.count("refunds", "payment_id = :p", p=uuid.UUID(payment_id)) == 1


async def test_cancel_after_the_window_stops_renewal_and_keeps_access_until_the_end(billing):
    user, film, purchase = await _paid(billing, refund_window_days=0)
    response = await _cancel(billing, user, purchase["subscription"]["id"])
    answer = response.json()
    assert answer["action"] == "canceled"
    assert answer["refund"] is None
    assert answer["subscription"]["status"] == "canceled"
    assert answer["subscription"]["auto_renew"] is False
    access = await billing.access(user, film)
    assert access["allowed"] is True
    assert datetime.fromisoformat(access["until"]) == datetime.fromisoformat(answer["access_until"])
    assert await billing.count("refunds", "user_id = :u", u=user) == 0
    # Refunding the payment directly is refused too.
    refused = await _refund(billing, user, purchase["payment"]["id"])
    assert (refused.status_code, refused.json()["code"]) == (409, "refund_window_passed")


async def test_cancel_refuses_other_users_unknown_and_unpaid_subscriptions(billing):
    user, _, purchase = await _paid(billing)
    plan_id = await billing.put_plan()
    unpaid = (await billing.buy(user, plan_id)).json()["subscription"]["id"]
    before = await billing.table_counts()
    for who, sid, status, code in (
        (uuid.uuid4(), purchase["subscription"]["id"], 404, "subscription_not_found"),
        (user, str(uuid.uuid4()), 404, "subscription_not_found"),
        (user, "nope", 422, "validation_error"),
        (user, unpaid, 409, "subscription_not_cancelable"),
    ):
        response = await _cancel(billing, who, sid)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert await billing.table_counts() == before


async def test_user_refund_rules_and_nothing_written_when_refused(billing):
    user, _, purchase = await _paid(billing)
    payment_id = purchase["payment"]["id"]
    plan_id = await billing.put_plan()
    pending_payment = (await billing.buy(user, plan_id)).json()["payment"]["id"]
    before = await billing.table_counts()
    for who, pid, status, code in (
        (uuid.uuid4(), payment_id, 404, "payment_not_found"),
        (user, str(uuid.uuid4()), 404, "payment_not_found"),
        (user, pending_payment, 409, "payment_not_refundable"),
    ):
        response = await _refund(billing, who, pid)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert await billing.table_counts() == before

    first = await _refund(billing, user, payment_id, key="refund-1")
    assert first.status_code == 201
    assert (await _refund(billing, user, payment_id, key="refund-1")).json() == first.json()
    before = await billing.table_counts()
    second = await _refund(billing, user, payment_id, key="refund-2")
    assert (second.status_code, second.json()["code"]) == (409, "payment_already_refunded")
    assert await billing.table_counts() == before
    status = await billing.scalar(
        "SELECT status FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    assert status == "refunded"


async def test_twenty_concurrent_refunds_make_exactly_one(billing):
    user, _, purchase = await _paid(billing, price_amount=2000)
    payment_id = purchase["payment"]["id"]
    responses = await asyncio.gather(
        *(_refund(billing, user, payment_id, key=f"r-{i}") for i in range(10)),
        *(_refund(billing, user, payment_id) for _ in range(10)),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {
        "payment_already_refunded"
    }
    assert await billing.count("refunds", "payment_id = :p", p=uuid.UUID(payment_id)) == 1
    calls = [
        c
        for c in billing.fake.calls_to("POST", "/internal/v1/refunds")
        if c.body["payment_id"] == payment_id
    ]
    assert len(calls) == 1
    assert (
        await billing.scalar(
            "SELECT refunded_amount FROM payments WHERE id = :p", p=uuid.UUID(payment_id)
        )
        == 2000
    )


async def test_twenty_concurrent_admin_refunds_never_exceed_the_charge(billing):
    user, _, purchase = await _paid(billing, price_amount=1000)
    payment_id = purchase["payment"]["id"]
    responses = await asyncio.gather(
        *(
            _admin_refund(billing, payment_id, key=f"a-{i}", amount=300, reason="goodwill")
            for i in range(20)
        )
    )
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 3  # 3 × 300 fits in 1000, a fourth does not
    assert {r.json()["code"] for r in responses if r.status_code != 201} == {
        "refund_exceeds_remaining"
    }
    assert (
        await billing.scalar(
            "SELECT refunded_amount FROM payments WHERE id = :p", p=uuid.UUID(payment_id)
        )
        == 900
    )


async def test_partial_then_the_remainder_and_over_the_remainder_changes_nothing(billing):
    user, _, purchase = await _paid(billing, price_amount=1000)
    payment_id = purchase["payment"]["id"]
    billing.fake.refund_status = "succeeded"
    partial = await _admin_refund(billing, payment_id, key="p1", amount=300, reason="late stream")
    assert partial.status_code == 201
    assert partial.json()["status"] == "succeeded"
    payment = await billing.payment(user, payment_id)
    assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", 300)
    # The subscription is untouched by a partial refund without end_subscription.
    assert (
        await billing.scalar(
            "SELECT status FROM subscriptions WHERE id = :s",
            s=uuid.UUID(purchase["subscription"]["id"]),
        )
        == "active"
    )

    before = await billing.table_counts()
    over = await _admin_refund(billing, payment_id, key="p2", amount=701, reason="too much")
    assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_remaining")
    assert over.json()["details"] == {"remaining": 700, "currency": "usd"}
    assert await billing.table_counts() == before

    rest = await _admin_refund(
        billing, payment_id, key="p3", reason="the rest", end_subscription=True
    )
    assert rest.status_code == 201 and rest.json()["amount"] == 700
    payment = await billing.payment(user, payment_id)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", 1000)
    assert (
        await billing.scalar(
            "SELECT status FROM subscriptions WHERE id = :s",
            s=uuid.UUID(purchase["subscription"]["id"]),
        )
        == "refunded"
    )
    nothing_left = await _admin_refund(billing, payment_id, key="p4", amount=1)
    assert (nothing_left.status_code, nothing_left.json()["code"]) == (
        409,
        "payment_already_refunded",
    )


async def test_a_refund_that_fails_later_is_reversed_and_flagged_not_reactivated(billing):
    user, film, purchase = await _paid(billing, price_amount=900)
    payment_id = purchase["payment"]["id"]
    refund = (await _cancel(billing, user, purchase["subscription"]["id"])).json()["refund"]
    assert (await billing.refund_event(refund, "succeeded")).json() == {"applied": True}
    assert (await billing.payment(user, payment_id))["status"] == "refunded"
    # The bank returns the refund later.
    failed = await billing.refund_event(refund, "failed", failure_code="expired_or_canceled_card")
    assert failed.json() == {"applied": True}
    payment = await billing.payment(user, payment_id)
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 0)
    kinds = await billing.scalar(
        "SELECT string_agg(kind, ',' ORDER BY id) FROM ledger_entries WHERE payment_id = :p",
        p=uuid.UUID(payment_id),
    )
    assert kinds == "charge,refund,reversal"
    subs = (
        await billing.client.get(
            f"/internal/v1/users/{user}/subscriptions", headers=as_service("admin")
        )
    ).json()
    (sub,) = subs["items"]
    assert sub["status"] == "refunded" and sub["needs_attention"] is True
    assert refund["id"] in sub["attention_note"]
    assert (await billing.access(user, film))["allowed"] is False
    # A late "succeeded" for that refund does not move it back.
    assert (await billing.refund_event(refund, "succeeded")).json() == {"applied": False}


async def test_gateway_refusing_a_refund_fails_it_and_releases_the_money(billing):
    user, _, purchase = await _paid(billing, price_amount=500)
    payment_id = purchase["payment"]["id"]
    billing.fake.mode = "refuse_refunds"
    response = await _admin_refund(billing, payment_id, amount=200, reason="x")
    assert response.status_code == 201
    assert response.json()["status"] == "failed"
    payment = await billing.payment(user, payment_id)
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 0)
    assert (
        await billing.count(
            "ledger_entries", "payment_id = :p AND kind = 'reversal'", p=uuid.UUID(payment_id)
        )
        == 1
    )


async def test_refund_while_the_gateway_is_down_stays_reserved_and_the_worker_sends_it(billing):
    user, film, purchase = await _paid(billing, price_amount=800)
    payment_id = purchase["payment"]["id"]
    billing.fake.mode = "down"
    response = await _cancel(billing, user, purchase["subscription"]["id"])
    refund = response.json()["refund"]
    assert refund["status"] == "pending"
    assert refund["id"] not in billing.fake.refunds
    assert (await billing.access(user, film))["allowed"] is False
    billing.fake.mode = "ok"
    billing.fake.refund_status = "succeeded"
    due = await billing.scalar(
        "SELECT next_check_at FROM refunds WHERE id = :r", r=uuid.UUID(refund["id"])
    )
    await billing.work(now=due)
    assert refund["id"] in billing.fake.refunds
    assert (await billing.payment(user, payment_id))["status"] == "refunded"


async def test_admin_views(billing):
    user, _, purchase = await _paid(billing)
    payment_id = purchase["payment"]["id"]
    await _admin_refund(billing, payment_id, amount=100, reason="sorry")
    admin = as_service("admin")
    payments = (
        await billing.client.get(f"/internal/v1/users/{user}/payments", headers=admin)
    ).json()
    assert [p["id"] for p in payments["items"]] == [payment_id]
    assert payments["items"][0]["user_id"] == str(user)
    refunds = (await billing.client.get(f"/internal/v1/users/{user}/refunds", headers=admin)).json()
    assert [(r["amount"], r["reason"]) for r in refunds["items"]] == [(100, "sorry")]
    one = await billing.client.get(f"/internal/v1/payments/{payment_id}", headers=admin)
    assert one.json()["refunded_amount"] == 100
    missing = await billing.client.get(f"/internal/v1/payments/{uuid.uuid4()}", headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "payment_not_found")
    before = await billing.table_counts()
    for body in ({"amount": 0}, {"amount": -5}, {"amount": "lots"}, {"amount": 1, "extra": True}):
        bad = await _admin_refund(billing, payment_id, **body)
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    reused = await _admin_refund(billing, payment_id, key="adm", amount=1)
    assert reused.status_code == 201
    before = await billing.table_counts()
    other = await _admin_refund(billing, payment_id, key="adm", amount=2)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert await billing.table_counts() == before


async def test_admin_refund_retried_after_a_crash_past_its_commit_refunds_once(
    billing, monkeypatch
):
    """The refund commits before its Idempotency-Key's answer does. A crash between the two
    (simulated: the hand-off to pay_api dies right after the commit) must not let the retry with
    the same key reserve a second refund."""
    from billing.refunds import service

    user, _, purchase = await _paid(billing, price_amount=1000)
    payment_id = purchase["payment"]["id"]
    real_submit = service.submit
    crashes = {"left": 1}

    async def dies_once_after_the_commit(**kwargs):
        if crashes["left"]:
            crashes["left"] -= 1
            raise ConnectionResetError("the process died after committing the refund")
        return await real_submit(**kwargs)

    monkeypatch.setattr(service, "submit", dies_once_after_the_commit)
    with pytest.raises(ConnectionResetError):
        await _admin_refund(billing, payment_id, key="one-click", amount=300, reason="late film")
    retried = await _admin_refund(
        billing, payment_id, key="one-click", amount=300, reason="late film"
    )
    assert retried.status_code == 201, retried.text

    pid = uuid.UUID(payment_id)
    assert await billing.count("refunds", "payment_id = :p", p=pid) == 1
    assert await billing.scalar("SELECT refunded_amount FROM payments WHERE id = :p", p=pid) == 300
    await billing.work()
    sent = {
        call.body["refund_id"]
        for call in billing.fake.calls_to("POST", "/internal/v1/refunds")
        if call.body["payment_id"] == payment_id
    }
    assert sent == {retried.json()["id"]}


async def _refund_rows(billing, payment_id):
    async with billing.resources.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT amount, status, reason, initiated_by FROM refunds"
                " WHERE payment_id = :p ORDER BY created_at"
            ),
            {"p": uuid.UUID(payment_id)},
        )
        return [tuple(r) for r in rows]


async def _ledger(billing, payment_id):
    return await billing.scalar(
        "SELECT string_agg(kind || ':' || amount, ',' ORDER BY id) FROM ledger_entries"
        " WHERE payment_id = :p",
        p=uuid.UUID(payment_id),
    )


async def test_a_full_refund_made_in_stripes_dashboard_is_recorded_once(billing):
    user, film, purchase = await _paid(billing, price_amount=1000)
    payment = purchase["payment"]
    assert (await billing.access(user, film))["allowed"] is True  # cached now
    answer = await billing.event(payment, "succeeded", amount_refunded=1000)
    assert answer.json() == {"applied": True}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", 1000)
    assert await _refund_rows(billing, payment["id"]) == [
        (1000, "succeeded", "refunded outside billing", "stripe")
    ]
    assert await _ledger(billing, payment["id"]) == "charge:1000,refund:1000"
    sub = await billing.scalar(
        "SELECT status FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    assert sub == "refunded"
    assert (await billing.access(user, film))["allowed"] is False
    # The same news again (another event) changes nothing.
    before = await billing.table_counts()
    again = await billing.event(payment, "succeeded", amount_refunded=1000)
    assert again.json() == {"applied": False}
    assert (await billing.table_counts())["refunds"] == before["refunds"]
    assert await _ledger(billing, payment["id"]) == "charge:1000,refund:1000"


async def test_a_partial_outside_refund_adds_to_billings_own_and_never_exceeds_the_charge(billing):
    user, film, purchase = await _paid(billing, price_amount=1000)
    payment = purchase["payment"]
    billing.fake.refund_status = "succeeded"
    ours = await _admin_refund(billing, payment["id"], amount=300, reason="late stream")
    assert ours.json()["status"] == "succeeded"
    # Stripe's total counts ours (300) and 200 refunded in the Dashboard.
    assert (await billing.event(payment, "succeeded", amount_refunded=500)).json() == {
        "applied": True
    }
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("partially_refunded", 500)
    assert await _refund_rows(billing, payment["id"]) == [
        (300, "succeeded", "late stream", "admin"),
        (200, "succeeded", "refunded outside billing", "stripe"),
    ]
    assert (await billing.access(user, film))["allowed"] is True  # a partial refund keeps it
    assert (await billing.event(payment, "succeeded", amount_refunded=500)).json() == {
        "applied": False
    }
    # A total above the charge is read as the whole charge.
    assert (await billing.event(payment, "succeeded", amount_refunded=5000)).json() == {
        "applied": True
    }
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", 1000)
    assert await _ledger(billing, payment["id"]) == "charge:1000,refund:300,refund:200,refund:500"
    assert (await billing.access(user, film))["allowed"] is False


async def test_stripes_total_counting_our_pending_refund_records_nothing_more(billing):
    user, _, purchase = await _paid(billing, price_amount=1000)
    payment = purchase["payment"]
    pending = (await _admin_refund(billing, payment["id"], amount=400, reason="x")).json()
    assert pending["status"] == "pending"  # at Stripe already (pay_api gave its id), not final
    assert (await billing.event(payment, "succeeded", amount_refunded=400)).json() == {
        "applied": False
    }
    assert len(await _refund_rows(billing, payment["id"])) == 1
    # Its success later: 400 refunded, not 800.
    assert (await billing.refund_event(pending, "succeeded")).json() == {"applied": True}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("partially_refunded", 400)


async def test_the_reconciler_records_an_outside_refund_too(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    user = uuid.uuid4()
    payment = (await billing.buy(user, plan_id)).json()["payment"]
    billing.fake.set_payment(payment["id"], "succeeded", amount_refunded=250)  # webhooks lost
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE payments SET next_check_at = now() - interval '1 second' WHERE id = :p"),
            {"p": uuid.UUID(payment["id"])},
        )
    await billing.work()
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("partially_refunded", 250)
    assert await _ledger(billing, payment["id"]) == "charge:1000,refund:250"


async def test_a_total_reported_before_our_refund_failed_records_no_phantom_refund(billing):
    user, _, purchase = await _paid(billing, price_amount=1000)
    payment = purchase["payment"]
    ours = (await _admin_refund(billing, payment["id"], amount=400, reason="x")).json()
    assert (await billing.refund_event(ours, "succeeded")).json() == {"applied": True}
    assert (await billing.refund_event(ours, "failed")).json() == {"applied": True}
    # pay_api's payment event written while our 400 still counted, delivered late.
    stale = await billing.event(
        payment, "succeeded", amount_refunded=400, occurred_at="2026-01-01T00:00:00+00:00"
    )
    assert stale.json() == {"applied": False}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("succeeded", 0)
    # A fresh total (100 refunded in the Dashboard since) is recorded.
    fresh = await billing.event(
        payment, "succeeded", amount_refunded=100, occurred_at=datetime.now(UTC).isoformat()
    )
    assert fresh.json() == {"applied": True}
    shown = await billing.payment(user, payment["id"])
    assert (shown["status"], shown["refunded_amount"]) == ("partially_refunded", 100)


async def test_pay_apis_outside_figure_never_books_billings_own_refund_twice(billing):
    """billing's refund is pending with no Stripe id (pay_api's answer was lost) while pay_api
    already reports it in `amount_refunded`: with pay_api's exact `refunded_outside` nothing is
    booked as refunded outside billing; a real Dashboard refund is booked once."""
    user, _, purchase = await _paid(billing, price_amount=1000)
    payment = purchase["payment"]
    billing.fake.mode = "down"  # the refund's hand-off to pay_api gets no answer
    ours = (await _admin_refund(billing, payment["id"], amount=400, reason="x")).json()
    billing.fake.mode = "ok"
    assert ours["status"] == "pending"
    report = {"amount_refunded": 400, "refunded_outside": 0}
    assert (await billing.event(payment, "succeeded", **report)).json() == {"applied": False}
    assert len(await _refund_rows(billing, payment["id"])) == 1

    other_user, _, other = await _paid(billing, price_amount=1000)
    dashboard = {"amount_refunded": 300, "refunded_outside": 300}
    for _ in range(2):  # repeated: booked once
        await billing.event(other["payment"], "succeeded", **dashboard)
    rows = await _refund_rows(billing, other["payment"]["id"])
    assert [(amount, initiated_by) for amount, _, _, initiated_by in rows] == [(300, "stripe")]
