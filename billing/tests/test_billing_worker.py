"""The worker: reconciler with back-off, deadlines, subscription expiry, several copies at once."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from billing.clock import wall_now
from billing.pruning import prune
from conftest import REPO_ROOT, SERVICE_SECRET, TEST_REDIS_URL, as_user
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _pending(billing, **plan_fields):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)], **plan_fields)
    user = uuid.uuid4()
    response = await billing.buy(user, plan_id)
    assert response.status_code == 201
    return user, film, plan_id, response.json()


async def _make_due(billing, payment_id):
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE payments SET next_check_at = now() - interval '1 second' WHERE id = :p"),
            {"p": uuid.UUID(payment_id)},
        )


async def _column(billing, column, payment_id):
    return await billing.scalar(
        f"SELECT {column} FROM payments WHERE id = :p", p=uuid.UUID(payment_id)
    )


async def test_reconciler_applies_a_lost_webhook_and_backs_off_while_nothing_changes(billing):
    user, film, _, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    # Nothing to learn yet: each check doubles the wait (base 1 s, capped at 8 s in tests).
    delays = []
    for _ in range(5):
        due = await _column(billing, "next_check_at", payment_id)
        await billing.work(now=due)
        delays.append((await _column(billing, "next_check_at", payment_id) - due).total_seconds())
    assert delays == [2, 4, 8, 8, 8]
    assert (await billing.payment(user, payment_id))["status"] == "pending"
    # Stripe charged, the webhook was lost: the reconciler finds out.
    billing.fake.set_payment(payment_id, "succeeded")
    await _make_due(billing, payment_id)  # let the back-off pass, then a pass at the real time
    await billing.work()
    assert (await billing.payment(user, payment_id))["status"] == "succeeded"
    assert (await billing.access(user, film))["allowed"] is True
    refreshes = [c for c in billing.fake.calls_to("GET", f"/internal/v1/payments/{payment_id}")]
    assert len(refreshes) == 6


async def test_an_abandoned_payment_is_canceled_at_the_gateway_and_expires(billing):
    user, _, plan_id, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    deadline = await _column(billing, "expires_at", payment_id)
    await billing.work(now=deadline + timedelta(seconds=1))
    assert billing.fake.payments[payment_id]["status"] == "canceled"
    assert (await billing.payment(user, payment_id))["status"] == "expired"
    assert (
        await billing.scalar(
            "SELECT status FROM subscriptions WHERE id = :s",
            s=uuid.UUID(purchase["subscription"]["id"]),
        )
        == "incomplete_expired"
    )
    # The user can buy the plan again; a late "pending" event changes nothing.
    assert (await billing.event(purchase["payment"], "pending")).json() == {"applied": False}
    assert (await billing.buy(user, plan_id)).status_code == 201


async def test_expiry_that_loses_the_race_with_a_charge_records_the_charge(billing):
    user, film, _, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    billing.fake.cancel_outcome = "succeeded"  # Stripe charged just before the cancel
    async with billing.resources.engine.begin() as conn:  # the deadline passes
        await conn.execute(
            text("UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = :p"),
            {"p": uuid.UUID(payment_id)},
        )
    await billing.work()
    assert (await billing.payment(user, payment_id))["status"] == "succeeded"
    assert (await billing.access(user, film))["allowed"] is True


async def test_a_lost_cancel_answer_makes_it_unknown_until_the_reconciler_decides(billing):
    user, _, _, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    deadline = await _column(billing, "expires_at", payment_id)
    billing.fake.mode = "down"
    await billing.work(now=deadline + timedelta(seconds=1))
    assert (await billing.payment(user, payment_id))["status"] == "unknown"
    # An event does not move an unknown payment; it wakes the reconciler instead.
    assert (await billing.event(purchase["payment"], "processing")).json() == {"applied": False}
    assert (await billing.payment(user, payment_id))["status"] == "unknown"
    billing.fake.mode = "ok"
    billing.fake.set_payment(payment_id, "canceled")
    await billing.work(now=deadline + timedelta(seconds=2))
    assert (await billing.payment(user, payment_id))["status"] == "expired"


async def test_a_lost_confirm_answer_makes_it_unknown_until_the_reconciler_finds_it_paid(billing):
    """pay_api reports `unknown` (Stripe's answer to its confirmation was lost): only the
    reconciler, which asks pay_api (and so Stripe), moves it on."""
    user, film, _, purchase = await _pending(billing)
    payment = purchase["payment"]
    payment_id = payment["id"]
    assert (await billing.event(payment, "unknown")).json() == {"applied": True}
    assert (await billing.payment(user, payment_id))["status"] == "unknown"
    moved_at = await _column(billing, "updated_at", payment_id)
    # The reconciler is due soon (the base delay), not on a backed-off schedule.
    due = await _column(billing, "next_check_at", payment_id)
    assert (due - moved_at).total_seconds() <= 1
    # News that does not come from the reconciler does not move it (the webhook's "succeeded"
    # included): it only wakes the reconciler.
    for status in ("pending", "processing", "succeeded"):
        assert (await billing.event(payment, status)).json() == {"applied": False}
        assert (await billing.payment(user, payment_id))["status"] == "unknown"
    assert (await billing.access(user, film))["allowed"] is False
    assert await billing.count("ledger_entries", "payment_id = :p", p=uuid.UUID(payment_id)) == 0
    # The reconciler asks pay_api, which asked Stripe: it was charged.
    billing.fake.set_payment(payment_id, "succeeded")
    await billing.work()
    assert (await billing.payment(user, payment_id))["status"] == "succeeded"
    assert (await billing.access(user, film))["allowed"] is True
    assert await billing.count("ledger_entries", "payment_id = :p", p=uuid.UUID(payment_id)) == 1
    # A late "unknown" never moves it back.
    assert (await billing.event(payment, "unknown")).json() == {"applied": False}
    assert (await billing.payment(user, payment_id))["status"] == "succeeded"


async def test_an_unknown_payment_stripe_never_charged_goes_back_to_pending(billing):
    user, _, _, purchase = await _pending(billing)
    payment = purchase["payment"]
    payment_id = payment["id"]
    assert (await billing.event(payment, "unknown")).json() == {"applied": True}
    # pay_api cannot tell yet (still unknown): it stays, and the reconciler backs off.
    billing.fake.set_payment(payment_id, "unknown")
    due = await _column(billing, "next_check_at", payment_id)
    await billing.work(now=due)
    assert (await billing.payment(user, payment_id))["status"] == "unknown"
    assert (await _column(billing, "next_check_at", payment_id) - due).total_seconds() == 2
    # The confirmation never reached Stripe: the user may pay again.
    billing.fake.set_payment(payment_id, "pending")
    await _make_due(billing, payment_id)
    await billing.work()
    assert (await billing.payment(user, payment_id))["status"] == "pending"


async def test_paid_periods_end_and_access_with_them(billing):
    user, film, plan_id, purchase = await _pending(
        billing, period_unit="day", period_count=1, refund_window_days=0
    )
    await billing.event(purchase["payment"], "succeeded")
    # Canceled at period end: access lasts until the end, not after (no renewal).
    canceled = await billing.client.post(
        f"/api/v1/subscriptions/{purchase['subscription']['id']}/cancel", headers=as_user(user)
    )
    assert canceled.json()["action"] == "canceled"
    assert (await billing.access(user, film))["allowed"] is True
    end = await billing.scalar(
        "SELECT current_period_end FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    await billing.work(now=end - timedelta(seconds=1))
    assert (await billing.access(user, film))["allowed"] is True
    done = await billing.work(now=end + timedelta(seconds=1))
    assert done["expire_subscriptions"] >= 1
    subs = (await billing.client.get("/api/v1/subscriptions", headers=as_user(user))).json()[
        "items"
    ]
    assert [s["status"] for s in subs] == ["expired"]
    assert (await billing.access(user, film))["allowed"] is False
    assert (await billing.buy(user, plan_id)).status_code == 201


async def test_refund_reconciler_finishes_a_pending_refund(billing):
    user, _, _, purchase = await _pending(billing)
    await billing.event(purchase["payment"], "succeeded")
    cancel = await billing.client.post(
        f"/api/v1/subscriptions/{purchase['subscription']['id']}/cancel", headers=as_user(user)
    )
    refund = cancel.json()["refund"]
    assert refund["status"] == "pending"
    billing.fake.refunds[refund["id"]]["status"] = "succeeded"
    due = await billing.scalar(
        "SELECT next_check_at FROM refunds WHERE id = :r", r=uuid.UUID(refund["id"])
    )
    await billing.work(now=due)
    payment = await billing.payment(user, purchase["payment"]["id"])
    assert payment["status"] == "refunded"
    assert payment["refunds"][0]["status"] == "succeeded"


async def test_two_workers_at_once_take_each_row_once(billing):
    billing.fake.mode = "down"
    payments = []
    for _ in range(6):
        plan_id = await billing.put_plan()
        user = uuid.uuid4()
        await billing.buy(user, plan_id)
        payments.append(
            await billing.scalar("SELECT id::text FROM payments WHERE user_id = :u", u=user)
        )
    billing.fake.mode = "ok"
    due = max([await _column(billing, "next_check_at", p) for p in payments])
    await asyncio.gather(billing.work(now=due), billing.work(now=due), billing.work(now=due))
    for payment_id in payments:
        calls = [
            c
            for c in billing.fake.calls_to("POST", "/internal/v1/payments")
            if c.body["payment_id"] == payment_id
        ]
        assert len(calls) == 2  # the 503 during purchase, then exactly one registration
        assert await _column(billing, "status", payment_id) == "pending"


async def test_outbox_rows_are_delivered_by_the_worker(billing):
    await billing.put_plan()  # a catalog change: one outbox row, not delivered yet
    assert await billing.count("outbox", "delivered_at IS NULL") >= 1
    done = await billing.work()
    assert done["deliver_outbox"] >= 1
    assert await billing.count("outbox", "delivered_at IS NULL") == 0


async def test_the_worker_command_runs_one_pass(database_url, fake_pay_api):
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "AUTH_JWT_SECRET": "worker-test-secret-worker-test-secret",
        "SERVICE_JWT_SECRET": SERVICE_SECRET,
        "PAY_API_URL": fake_pay_api.url,
        "BILLING_REDIS_PREFIX": "billing_test_worker_cmd:",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing.worker",
        "--once",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert b'"event": "worker stopped"' in output


async def test_a_processing_payment_past_its_deadline_is_asked_to_cancel_but_not_expired(billing):
    user, film, _, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    billing.fake.set_payment(payment_id, "processing")
    assert (await billing.event(purchase["payment"], "processing")).json() == {"applied": True}
    deadline = await _column(billing, "expires_at", payment_id)

    def cancels():
        return billing.fake.calls_to("POST", f"/internal/v1/payments/{payment_id}/cancel")

    # Money is moving: pay_api answers processing; it stays open and is asked again on a back-off.
    await billing.work(now=deadline + timedelta(seconds=1))
    assert len(cancels()) == 1
    assert await _column(billing, "status", payment_id) == "processing"
    await billing.work(now=deadline + timedelta(seconds=1))
    assert len(cancels()) == 1
    due = await _column(billing, "next_check_at", payment_id)
    await billing.work(now=due)
    assert len(cancels()) == 2
    assert await _column(billing, "status", payment_id) == "processing"

    # Stripe's debit fails after processing: pay_api says pending; past the deadline the next
    # pass cancels it at pay_api and it expires.
    billing.fake.set_payment(payment_id, "pending", failure_code="insufficient_funds")
    due = await _column(billing, "next_check_at", payment_id)
    await billing.work(now=due)
    assert billing.fake.payments[payment_id]["status"] == "canceled"
    assert await _column(billing, "status", payment_id) == "expired"
    assert (await billing.access(user, film))["allowed"] is False


async def test_a_processing_payment_past_its_deadline_that_succeeds_is_recorded(billing):
    user, film, _, purchase = await _pending(billing)
    payment_id = purchase["payment"]["id"]
    billing.fake.set_payment(payment_id, "processing")
    await billing.event(purchase["payment"], "processing")
    async with billing.resources.engine.begin() as conn:  # the deadline passes
        await conn.execute(
            text("UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = :p"),
            {"p": uuid.UUID(payment_id)},
        )
    await _make_due(billing, payment_id)
    await billing.work()
    assert await _column(billing, "status", payment_id) == "processing"
    billing.fake.set_payment(payment_id, "succeeded")
    await _make_due(billing, payment_id)
    await billing.work()
    assert await _column(billing, "status", payment_id) == "succeeded"
    assert (await billing.access(user, film))["allowed"] is True


async def test_the_worker_serves_its_metrics_while_it_runs(database_url, fake_pay_api):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "AUTH_JWT_SECRET": "worker-test-secret-worker-test-secret",
        "SERVICE_JWT_SECRET": SERVICE_SECRET,
        "PAY_API_URL": fake_pay_api.url,
        "BILLING_REDIS_PREFIX": "billing_test_worker_metrics:",
        "BILLING_WORKER_INTERVAL_SECONDS": "0.2",
        "BILLING_WORKER_METRICS_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing.worker", cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    samples: dict[str, float] = {}
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                    samples = {
                        sample.name: sample.value
                        for family in text_string_to_metric_families(body)
                        for sample in family.samples
                    }
                except httpx.TransportError:
                    pass
                if samples.get("billing_worker_last_pass_timestamp_seconds"):
                    break
                await asyncio.sleep(0.1)
    finally:
        process.terminate()
        await process.wait()
    assert time.time() - samples["billing_worker_last_pass_timestamp_seconds"] < 30
    assert "billing_worker_rows_total" in samples


async def test_old_guard_rows_are_pruned_and_recent_ones_stay(billing):
    """Idempotency keys, pay_api's event ids and delivered outbox rows go once past their
    keeping time (defaults: 72 h, 35 days, 7 days); younger ones stay."""
    _, _, _, purchase = await _pending(billing)
    payment_id = uuid.UUID(purchase["payment"]["id"])
    plan_id = await billing.put_plan()
    for key in ("old-key", "new-key"):
        response = await billing.buy(uuid.uuid4(), plan_id, **{"Idempotency-Key": key})
        assert response.status_code == 201
    for _ in range(2):  # two event ids of one payment
        assert (await billing.event(purchase["payment"], "processing")).status_code == 200
    await billing.work()  # delivers the outbox rows written so far
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '73 hours' "
                "WHERE key = 'old-key'"
            )
        )
        await conn.execute(
            text(
                "UPDATE processed_events SET received_at = now() - interval '36 days' "
                "WHERE event_id = (SELECT event_id FROM processed_events WHERE payment_id = :p "
                "ORDER BY received_at LIMIT 1)"
            ),
            {"p": payment_id},
        )
        old_outbox, recent_outbox = (
            await conn.execute(
                text(
                    "SELECT min(id), max(id) FROM outbox WHERE delivered_at IS NOT NULL "
                    "AND delivered_at > now() - interval '1 day'"
                )
            )
        ).one()
        await conn.execute(
            text("UPDATE outbox SET delivered_at = now() - interval '8 days' WHERE id = :i"),
            {"i": old_outbox},
        )
    assert old_outbox != recent_outbox
    keys_before = await billing.count("idempotency_keys")

    done = await billing.work()

    assert done["prune_old_rows"] == 3
    assert await billing.count("idempotency_keys", "key = 'old-key'") == 0
    assert await billing.count("idempotency_keys", "key = 'new-key'") == 1
    assert await billing.count("idempotency_keys") == keys_before - 1
    assert await billing.count("processed_events", "payment_id = :p", p=payment_id) == 1
    assert await billing.count("outbox", "id = :i", i=old_outbox) == 0
    assert await billing.count("outbox", "id = :i", i=recent_outbox) == 1


async def test_undelivered_outbox_rows_are_never_pruned(billing):
    async with billing.resources.engine.begin() as conn:
        undelivered = await conn.scalar(
            text(
                "INSERT INTO outbox (topic, payload, attempts, created_at) "
                "VALUES ('test.undelivered', '{}', 0, now() - interval '60 days') RETURNING id"
            )
        )
    async with billing.resources.sessionmaker() as session:  # written 60 days ago, never sent
        await prune(session, settings=billing.resources.settings, now=wall_now(), limit=1000)
    assert await billing.count("outbox", "id = :i", i=undelivered) == 1
    await billing.work()  # delivered, so the next tests see a clean outbox
    assert await billing.count("outbox", "delivered_at IS NULL") == 0
