"""Renewals: one renewal payment per (subscription, period start), charged off-session through
pay_api (the fake answers as pay_api does: each attempt number confirmed once); success extends
from the old end; declines enter grace and follow the retry schedule; hard declines and 3-D Secure
wait for the user; grace running out ends the subscription; cancel at period end and resume; the
manager's retry-now and end; the emails each step writes. Time is moved by passing `now`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import jwt
import pytest
from billing.payments.models import Payment
from billing.payments.service import HELD_CHARGES, charges_written_together
from billing.worker.jobs import claim_batch
from conftest import SERVICE_SECRET, as_service, as_user
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)


class Subscriber:
    """A user holding a paid 30-day plan covering one film."""

    def __init__(self, billing, user, film, plan_id, subscription_id, end) -> None:
        self.billing, self.user, self.film, self.plan_id = billing, user, film, plan_id
        self.id, self.end = subscription_id, end

    @classmethod
    async def start(cls, billing, **plan_fields) -> Subscriber:
        film = uuid.uuid4()
        fields = {"period_unit": "day", "period_count": 30, **plan_fields}
        plan_id = await billing.put_plan(film_ids=[str(film)], **fields)
        user = uuid.uuid4()
        purchase = await billing.paid_subscription(user, plan_id)
        subscription_id = uuid.UUID(purchase["subscription"]["id"])
        end = await billing.scalar(
            "SELECT current_period_end FROM subscriptions WHERE id = :s", s=subscription_id
        )
        return cls(billing, user, film, plan_id, subscription_id, end)

    async def row(self) -> dict:
        async with self.billing.resources.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT * FROM subscriptions WHERE id = :s"), {"s": self.id}
            )
            return dict(result.mappings().one())

    async def renewals(self) -> list[dict]:
        async with self.billing.resources.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT * FROM payments WHERE subscription_id = :s AND kind = 'renewal' "
                    "ORDER BY period_start"
                ),
                {"s": self.id},
            )
            return [dict(r) for r in result.mappings()]

    async def access(self, now: datetime) -> dict:
        from billing.access.service import decide

        async with self.billing.resources.sessionmaker() as session:
            decision = await decide(session=session, user_id=self.user, film_id=self.film, now=now)
        return {"allowed": decision.allowed, "reason": decision.reason, "until": decision.until}

    async def emails(self) -> list[dict]:
        async with self.billing.resources.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT payload FROM outbox WHERE topic = 'email' "
                    "AND payload->>'user_id' = :u ORDER BY id"
                ),
                {"u": str(self.user)},
            )
            return [r[0] for r in result]

    async def email_kinds(self) -> list[str]:
        return [e["kind"] for e in await self.emails()]

    async def ledger_charges(self) -> int:
        return await self.billing.count(
            "ledger_entries",
            "kind = 'charge' AND payment_id IN (SELECT id FROM payments WHERE subscription_id = :s)",
            s=self.id,
        )

    async def post(self, action: str):
        return await self.billing.client.post(
            f"/api/v1/subscriptions/{self.id}/{action}", headers=as_user(self.user)
        )


async def work(billing, now: datetime) -> dict[str, int]:
    done = await billing.work(now=now)
    assert -1 not in done.values(), done  # no job failed
    return done


async def test_a_renewal_is_charged_once_and_extends_from_the_old_end(billing):
    sub = await Subscriber.start(billing)
    done = await work(billing, sub.end - timedelta(minutes=30))  # within the lead time
    assert done["write_renewals"] >= 1 and done["charge_renewals"] >= 1
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "succeeded" and renewal["charge_attempts"] == 1
    assert (renewal["period_start"], renewal["period_end"]) == (sub.end, sub.end + 30 * DAY)
    row = await sub.row()
    assert row["status"] == "active"
    assert (row["current_period_start"], row["current_period_end"]) == (
        sub.end,
        sub.end + 30 * DAY,
    )
    # Renewed before the old end: the user watches on without a gap, until the new end.
    just_renewed = await sub.access(sub.end - timedelta(minutes=20))
    assert just_renewed == {
        "allowed": True,
        "reason": "subscription",
        "until": sub.end + 30 * DAY,
    }
    # Later passes write nothing and charge nothing more for that period.
    await work(billing, sub.end + timedelta(minutes=1))
    assert len(await sub.renewals()) == 1
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]
    assert await sub.ledger_charges() == 2  # the first payment and the renewal
    assert (await sub.access(sub.end + DAY))["until"] == sub.end + 30 * DAY
    receipt = (await sub.emails())[-1]
    assert receipt["kind"] == "receipt" and "Your subscription was renewed." in receipt["text"]
    # The user sees the renewal among their payments.
    mine = await billing.payment(sub.user, str(renewal["id"]))
    assert mine["status"] == "succeeded" and mine["amount"] == 999
    # An auditor's list names each payment's kind and the period it paid (the chaos run counts
    # renewals and double renewals from it).
    listed = await billing.client.get(
        f"/internal/v1/users/{sub.user}/payments", headers=as_service("admin")
    )
    paid_periods = {
        (
            p["kind"],
            datetime.fromisoformat(p["period_start"]),
            datetime.fromisoformat(p["period_end"]),
        )
        for p in listed.json()["items"]
    }
    assert paid_periods == {
        ("first", sub.end - 30 * DAY, sub.end),
        ("renewal", sub.end, sub.end + 30 * DAY),
    }


async def test_two_workers_racing_write_one_renewal_and_charge_it_once(billing):
    sub = await Subscriber.start(billing)
    now = sub.end - timedelta(minutes=30)
    await asyncio.gather(work(billing, now), work(billing, now), work(billing, now))
    (renewal,) = await sub.renewals()
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]
    assert await sub.ledger_charges() == 2
    # The database itself refuses a second renewal payment for the period.
    with pytest.raises(IntegrityError):
        async with billing.resources.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO payments (id, user_id, subscription_id, plan_id, kind, status, "
                    "amount, currency, refunded_amount, description, expires_at, next_check_at, "
                    "check_attempts, charge_attempts, period_start, period_end) SELECT :id, "
                    "user_id, subscription_id, plan_id, kind, 'created', amount, currency, 0, '', "
                    "expires_at, now(), 0, 0, period_start, period_end FROM payments WHERE id = :p"
                ),
                {"id": uuid.uuid4(), "p": renewal["id"]},
            )


async def test_a_decline_keeps_access_in_grace_retries_on_schedule_and_a_new_card_pays(billing):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = "card_declined"
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    row = await sub.row()
    assert row["status"] == "past_due" and row["last_decline_code"] == "card_declined"
    assert row["grace_until"] == sub.end + 7 * DAY
    assert renewal["next_charge_at"] == sub.end + DAY  # retries 1, 3, 5 days after the end
    failed = (await sub.emails())[-1]
    assert failed["kind"] == "renewal_failed"
    assert f"/pay/{renewal['id']}/card?t=" in failed["text"]

    # After the period's end the user still watches: grace, until its end.
    grace = await sub.access(sub.end + timedelta(hours=2))
    assert grace == {"allowed": True, "reason": "grace", "until": sub.end + 7 * DAY}

    await work(billing, sub.end + 12 * timedelta(hours=1))  # not due yet: no attempt
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]
    await work(billing, sub.end + DAY + timedelta(seconds=1))
    (renewal,) = await sub.renewals()
    assert renewal["charge_attempts"] == 2 and renewal["next_charge_at"] == sub.end + 3 * DAY

    # The user gives another card through the emailed link: pay_api charges the same payment
    # and reports it; the period runs from the old end.
    paid = await billing.event(
        {"id": str(renewal["id"]), "amount": renewal["amount"], "currency": "usd"}, "succeeded"
    )
    assert paid.json() == {"applied": True}
    row = await sub.row()
    assert row["status"] == "active" and row["grace_until"] is None
    assert row["current_period_end"] == sub.end + 30 * DAY
    assert (await sub.access(sub.end + 2 * DAY))["reason"] == "subscription"
    await work(billing, sub.end + 3 * DAY + timedelta(seconds=1))
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1, 2]  # no retry after paying
    assert await sub.ledger_charges() == 2


async def test_retries_run_out_then_grace_ends_and_the_subscription_expires(billing):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = "insufficient_funds"
    for moment in (-timedelta(minutes=30), DAY, 3 * DAY, 5 * DAY):
        await work(billing, sub.end + moment + timedelta(seconds=1))
    (renewal,) = await sub.renewals()
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1, 2, 3, 4]
    assert renewal["next_charge_at"] is None
    kinds = await sub.email_kinds()
    assert kinds.count("renewal_failed") == 3 and kinds[-1] == "last_warning"
    assert (await sub.access(sub.end + 6 * DAY))["reason"] == "grace"

    await work(billing, sub.end + 7 * DAY + timedelta(seconds=1))
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "expired"  # canceled at pay_api: it can never be charged later
    assert billing.fake.calls_to("POST", f"/internal/v1/payments/{renewal['id']}/cancel")
    row = await sub.row()
    assert row["status"] == "expired" and row["auto_renew"] is False
    assert (await sub.access(sub.end + 7 * DAY + timedelta(seconds=2)))["allowed"] is False
    assert (await sub.email_kinds())[-1] == "subscription_ended"
    assert await sub.ledger_charges() == 1


@pytest.mark.parametrize("code", ["lost_card", "no_saved_card"])
async def test_a_hard_decline_is_not_retried_until_a_manager_or_a_new_card(billing, code):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = code
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    assert renewal["next_charge_at"] is None
    row = await sub.row()
    assert row["status"] == "past_due" and row["last_decline_code"] == code
    email = (await sub.emails())[-1]
    assert email["kind"] == "renewal_failed" and "We will not try this card again." in email["text"]
    await work(billing, sub.end + 3 * DAY)
    assert billing.fake.charges_sent(renewal["id"]) == [1]

    # A manager retries now (with an Idempotency-Key: the same key answers the same).
    billing.fake.renewal_default = "succeeded"
    headers = {**as_service("admin"), "Idempotency-Key": f"retry-{sub.id}"}
    url = f"/internal/v1/subscriptions/{sub.id}/retry-renewal"
    first = await billing.client.post(url, headers=headers)
    again = await billing.client.post(url, headers=headers)
    assert first.status_code == 200, first.text
    assert again.json() == first.json()
    assert first.json()["renewal"]["payment_id"] == str(renewal["id"])
    await work(billing, sub.end + 3 * DAY + timedelta(seconds=1))
    row = await sub.row()
    assert row["status"] == "active" and row["current_period_start"] == sub.end
    # Nothing left to retry now.
    nothing = await billing.client.post(url, headers=as_service("admin"))
    assert nothing.status_code == 409 and nothing.json()["code"] == "no_renewal_to_retry"


async def test_authentication_required_emails_a_signed_link_and_waits_for_the_user(billing):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = "authentication_required"
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    assert renewal["next_charge_at"] is None and (await sub.row())["status"] == "past_due"
    email = (await sub.emails())[-1]
    assert email["kind"] == "action_required"
    link = next(w for w in email["text"].split() if "/authenticate?t=" in w)
    assert link.startswith(f"http://pay.public.test/pay/{renewal['id']}/authenticate?t=")
    claims = jwt.decode(
        link.split("?t=")[1], SERVICE_SECRET, algorithms=["HS256"], audience="pay_api:link"
    )
    assert (claims["sub"], claims["use"]) == (str(renewal["id"]), "authenticate")
    await work(billing, sub.end + 5 * DAY)
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]  # no automatic retry


async def test_pay_api_down_sends_the_same_attempt_again_and_it_is_confirmed_once(billing):
    sub = await Subscriber.start(billing)
    billing.fake.mode = "down"
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "created" and renewal["charge_attempts"] == 0
    assert renewal["next_charge_at"] > sub.end - timedelta(minutes=30)
    billing.fake.mode = "ok"
    await work(billing, sub.end)
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "succeeded" and renewal["charge_attempts"] == 1
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]


async def test_renewals_due_together_go_in_one_batch_each_answer_applied_on_its_own(billing):
    subs = [await Subscriber.start(billing) for _ in range(3)]
    paid, declined, unanswered = subs
    due = max(s.end for s in subs) - timedelta(minutes=30)
    billing.fake.mode = "down"
    await work(billing, due)  # written; pay_api unreachable: nothing known, attempts not counted
    written = {s: (await s.renewals())[0] for s in subs}
    assert [r["charge_attempts"] for r in written.values()] == [0, 0, 0]
    renewals = {s: r["id"] for s, r in written.items()}
    billing.fake.mode = "ok"
    billing.fake.renewal_outcomes[str(renewals[declined])] = "card_declined"
    billing.fake.renewal_outcomes[str(renewals[unanswered])] = "gateway_unavailable"
    batches = len(billing.fake.calls_to("POST", "/internal/v1/renewals/charges"))
    await work(billing, due + timedelta(minutes=20))

    calls = billing.fake.calls_to("POST", "/internal/v1/renewals/charges")[batches:]
    sent = [{c["payment_id"] for c in call.body["charges"]} for call in calls]
    assert any({str(r) for r in renewals.values()} <= ids for ids in sent), sent  # one call
    assert (await paid.row())["status"] == "active"
    assert (await paid.row())["current_period_end"] == paid.end + 30 * DAY
    assert (await declined.row())["status"] == "past_due"
    assert (await declined.renewals())[0]["charge_attempts"] == 1
    # Stripe did not answer that one: unknown, so the same attempt goes again later.
    waiting = (await unanswered.renewals())[0]
    assert (waiting["charge_attempts"], waiting["status"]) == (0, "created")
    assert waiting["next_charge_at"] > due + timedelta(minutes=20)
    assert (await unanswered.row())["status"] == "active"

    del billing.fake.renewal_outcomes[str(renewals[unanswered])]
    await work(billing, unanswered.end)
    (renewal,) = await unanswered.renewals()
    assert (renewal["status"], renewal["charge_attempts"]) == ("succeeded", 1)
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]
    assert billing.fake.charges_sent(renewal["id"]) == [1, 1, 1]  # down, unanswered, paid


async def test_a_batch_stays_within_a_twelfth_of_the_stripe_rate_cap(billing):
    from billing.renewals.service import batch_size

    settings = billing.resources.settings
    assert batch_size(settings.model_copy(update={"renewal_max_per_second": 0})) == (
        settings.renewal_batch_size
    )
    capped = settings.model_copy(update={"renewal_batch_size": 50, "renewal_max_per_second": 100})
    assert batch_size(capped) == 8
    assert batch_size(capped.model_copy(update={"renewal_max_per_second": 5})) == 1


async def test_a_pass_writes_and_charges_two_batches_per_loop_and_sends_their_receipts(
    billing, monkeypatch
):
    """`pass_size`: batches of 1, two loops → 4 renewals a pass (more than the worker's batch of
    1), their 4 receipts sent in the same pass; the fifth due waits for the next pass."""
    from billing.renewals.service import pass_size

    settings = billing.resources.settings.model_copy(
        update={"worker_batch_size": 1, "renewal_batch_size": 1, "renewal_concurrency": 2}
    )
    assert pass_size(settings) == 4
    assert pass_size(settings.model_copy(update={"worker_batch_size": 9})) == 9
    monkeypatch.setattr(billing.resources, "settings", settings)
    # Earlier tests' subscriptions, renewals and mail (one database) must not take this test's
    # places in a pass: none renews or is charged any more, their mail counts as sent.
    async with billing.resources.engine.begin() as conn:
        await conn.execute(text("UPDATE subscriptions SET auto_renew = false"))
        await conn.execute(
            text(
                "UPDATE payments SET next_charge_at = NULL "
                "WHERE kind = 'renewal' AND status IN ('created', 'pending')"
            )
        )
        await conn.execute(
            text("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
        )
    subs = [await Subscriber.start(billing) for _ in range(5)]
    due = max(s.end for s in subs) - timedelta(minutes=30)
    users = [str(s.user) for s in subs]

    async def receipts_sent() -> int:
        """Receipts of these subscribers that went out."""
        async with billing.resources.engine.connect() as conn:
            return await conn.scalar(
                text(
                    "SELECT count(*) FROM outbox WHERE topic = 'email' AND delivered_at IS NOT "
                    "NULL AND payload->>'kind' = 'receipt' AND payload->>'user_id' = ANY(:users)"
                ),
                {"users": users},
            )

    await work(billing, due - 2 * DAY)  # the first payments' receipts: 4 of them a pass
    await work(billing, due - 2 * DAY)
    first_receipts = await receipts_sent()
    assert first_receipts == len(subs)
    await work(billing, due)
    renewed = [s for s in subs if (await s.row())["current_period_end"] == s.end + 30 * DAY]
    assert len(renewed) == 4
    calls = billing.fake.calls_to("POST", "/internal/v1/renewals/charges")
    assert [len(call.body["charges"]) for call in calls[-4:]] == [1, 1, 1, 1]
    assert await receipts_sent() == first_receipts + 4
    await work(billing, due + timedelta(seconds=1))
    assert [(await s.row())["current_period_end"] - s.end for s in subs] == [30 * DAY] * 5
    assert await receipts_sent() == first_receipts + 5


async def test_a_renewal_one_worker_holds_is_left_alone_by_another_on_a_moved_clock(billing):
    """Found by the chaos run: its test clock moves a day a second, so two workers' passes read
    times a day apart, and a lease counted in billing's time let the second charge a renewal the
    first was charging (the attempt sent twice, the user emailed twice). A lease keeps other
    workers off a row for real seconds, whatever the clock says."""
    sub = await Subscriber.start(billing)
    billing.fake.mode = "down"
    await work(billing, sub.end - timedelta(minutes=30))  # written; its charge not answered
    billing.fake.mode = "ok"
    (renewal,) = await sub.renewals()
    async with billing.resources.sessionmaker() as session:  # one worker takes it to charge
        assert await claim_batch(
            session, Payment, Payment.id == renewal["id"], seconds=15, limit=1
        ) == [renewal["id"]]
    before = billing.fake.charges_sent(renewal["id"])
    await work(billing, sub.end + DAY)  # another worker's pass, a day later on the clock
    assert billing.fake.charges_sent(renewal["id"]) == before
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "created" and renewal["charge_attempts"] == 0


async def test_cancel_at_period_end_then_resume_then_cancel_for_good(billing):
    sub = await Subscriber.start(billing, refund_window_days=0)
    canceled = await sub.post("cancel")
    assert canceled.json()["action"] == "canceled"
    before = await billing.table_counts()
    again = await sub.post("cancel")  # cancel twice: the same answer, nothing changes
    assert again.status_code == 200 and again.json() == canceled.json()
    assert await billing.table_counts() == before

    await work(billing, sub.end - timedelta(minutes=30))
    assert await sub.renewals() == []  # no renewal for a canceled subscription
    resumed = await sub.post("resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active" and resumed.json()["auto_renew"] is True
    assert (await sub.post("resume")).json()["status"] == "active"  # resuming twice: the same

    billing.fake.renewal_default = "card_declined"
    await work(billing, sub.end - timedelta(minutes=20))
    (renewal,) = await sub.renewals()
    assert (await sub.row())["status"] == "past_due"
    # Canceled while past due: no automatic retry any more; access ends with the period.
    assert (await sub.post("cancel")).json()["action"] == "canceled"
    (renewal,) = await sub.renewals()
    assert renewal["next_charge_at"] is None
    await work(billing, sub.end + DAY + timedelta(seconds=1))
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]
    assert (await sub.access(sub.end + DAY))["allowed"] is False
    assert (await sub.row())["status"] == "canceled"
    # The period is over: its open renewal is closed at pay_api first (the next pass), then the
    # subscription ends — its grace unused, as the user canceled.
    await work(billing, sub.end + DAY + timedelta(seconds=2))
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "expired"
    assert billing.fake.calls_to("POST", f"/internal/v1/payments/{renewal['id']}/cancel")
    assert (await sub.row())["status"] == "expired"
    assert billing.fake.confirmed_attempts[str(renewal["id"])] == [1]

    # Resuming an ended subscription is refused and changes nothing.
    before = await billing.table_counts()
    refused = await sub.post("resume")
    assert refused.status_code == 409 and refused.json()["code"] == "subscription_not_resumable"
    assert await billing.table_counts() == before


async def test_resume_after_the_period_ended_is_refused(billing):
    sub = await Subscriber.start(billing, refund_window_days=0)
    await sub.post("cancel")
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE subscriptions SET current_period_start = now() - interval '31 days', "
                "current_period_end = now() - interval '1 second' WHERE id = :s"
            ),
            {"s": sub.id},
        )
    refused = await sub.post("resume")
    assert refused.status_code == 409 and refused.json()["code"] == "subscription_not_resumable"
    assert (await sub.row())["status"] == "canceled"


async def test_someone_elses_subscription_is_not_found(billing):
    sub = await Subscriber.start(billing)
    for action in ("resume", "cancel"):
        response = await billing.client.post(
            f"/api/v1/subscriptions/{sub.id}/{action}", headers=as_user(uuid.uuid4())
        )
        assert response.status_code == 404
        assert response.json()["code"] == "subscription_not_found"


async def test_a_renewal_charged_while_the_user_cancels_is_honored_once(billing):
    sub = await Subscriber.start(billing, refund_window_days=0)
    billing.fake.renewal_default = "processing"  # money moving when the user cancels
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "processing"
    assert (await sub.post("cancel")).json()["action"] == "canceled"
    paid = await billing.event(
        {"id": str(renewal["id"]), "amount": renewal["amount"], "currency": "usd"}, "succeeded"
    )
    assert paid.json() == {"applied": True}
    row = await sub.row()
    # Paid: the period is the user's; canceled: it will not renew again.
    assert row["status"] == "canceled" and row["current_period_end"] == sub.end + 30 * DAY
    assert await sub.ledger_charges() == 2
    await work(billing, sub.end + 30 * DAY - timedelta(minutes=30))
    assert len(await sub.renewals()) == 1


async def test_a_period_that_ends_while_its_renewal_may_be_charged_waits_for_the_answer(billing):
    """Found by the chaos run: the renewal's charge went out and its answer was lost, the user
    canceled, and the period ended before anyone knew the card was charged. The subscription is
    not ended while money may be moving: the renewal is closed at pay_api at once, and its answer
    decides — charged, so the paid period is the user's (never a charge for an ended one)."""
    sub = await Subscriber.start(billing, refund_window_days=0)
    billing.fake.lose_renewal_answers = True  # pay_api charges the card; billing never hears
    await work(billing, sub.end - timedelta(minutes=30))
    billing.fake.lose_renewal_answers = False
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "created"
    assert billing.fake.payments[str(renewal["id"])]["status"] == "succeeded"
    assert (await sub.post("cancel")).json()["action"] == "canceled"

    await work(billing, sub.end + timedelta(seconds=1))  # the period is over
    row = await sub.row()
    assert row["status"] == "canceled" and not row["needs_attention"]
    assert (await sub.access(sub.end + timedelta(seconds=1)))["allowed"] is False
    await work(billing, sub.end + timedelta(seconds=2))  # closed at pay_api: it was charged
    (renewal,) = await sub.renewals()
    assert renewal["status"] == "succeeded"
    assert billing.fake.calls_to("POST", f"/internal/v1/payments/{renewal['id']}/cancel")
    row = await sub.row()
    assert row["status"] == "canceled" and row["current_period_end"] == sub.end + 30 * DAY
    assert not row["needs_attention"]
    assert await sub.ledger_charges() == 2
    assert (await sub.access(sub.end + DAY))["allowed"] is True
    await work(billing, sub.end + 30 * DAY + timedelta(seconds=1))
    assert (await sub.row())["status"] == "expired"
    assert len(await sub.renewals()) == 1


async def test_a_manager_ends_a_subscription_and_its_open_renewal_is_closed(billing):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = "card_declined"
    await work(billing, sub.end - timedelta(minutes=30))
    headers = {**as_service("admin"), "Idempotency-Key": f"end-{sub.id}"}
    url = f"/internal/v1/subscriptions/{sub.id}/end"
    ended = await billing.client.post(url, headers=headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "expired"
    assert (await billing.client.post(url, headers=headers)).json() == ended.json()
    refused = await billing.client.post(url, headers=as_service("admin"))
    assert refused.status_code == 409 and refused.json()["code"] == "subscription_ended"
    await work(billing, sub.end - timedelta(minutes=29))
    (renewal,) = await sub.renewals()
    assert renewal["status"] in ("expired", "canceled")  # closed at pay_api, never charged
    assert (await sub.email_kinds())[-1] == "subscription_ended"
    listed = await billing.client.get(
        f"/internal/v1/users/{sub.user}/subscriptions", headers=as_service("admin")
    )
    (item,) = listed.json()["items"]
    assert item["status"] == "expired" and item["renewal"]["payment_id"] == str(renewal["id"])
    # A user or another service may not act for a manager.
    assert (await billing.client.post(url, headers=as_user(sub.user))).status_code == 401
    assert (await billing.client.post(url, headers=as_service("movies"))).status_code == 403


async def test_the_admin_sees_the_renewal_state(billing):
    sub = await Subscriber.start(billing)
    billing.fake.renewal_default = "card_declined"
    await work(billing, sub.end - timedelta(minutes=30))
    listed = await billing.client.get(
        f"/internal/v1/users/{sub.user}/subscriptions", headers=as_service("admin")
    )
    (item,) = listed.json()["items"]
    assert item["status"] == "past_due" and item["last_decline_code"] == "card_declined"
    assert datetime.fromisoformat(item["grace_until"]) == sub.end + 7 * DAY
    assert datetime.fromisoformat(item["renewal"]["next_retry_at"]) == sub.end + DAY
    assert item["renewal"]["attempts"] == 1 and item["renewal"]["payment_status"] == "pending"
    assert datetime.fromisoformat(item["renewal"]["next_renewal_at"]) == sub.end - timedelta(
        hours=1
    )


async def test_a_user_gets_a_card_link_for_their_own_subscription_only(billing):
    sub = await Subscriber.start(billing)
    link = await sub.post("card")
    assert link.status_code == 200, link.text
    body = link.json()
    assert body["pays_renewal"] is False
    assert body["url"].startswith(f"http://pay.public.test/cards/{sub.user}?t=")
    claims = jwt.decode(
        body["url"].split("?t=")[1], SERVICE_SECRET, algorithms=["HS256"], audience="pay_api:link"
    )
    assert (claims["sub"], claims["use"]) == (str(sub.user), "card_update")

    # In dunning, the link is the renewal's own page: the new card pays it at once.
    billing.fake.renewal_default = "card_declined"
    await work(billing, sub.end - timedelta(minutes=30))
    (renewal,) = await sub.renewals()
    dunning = (await sub.post("card")).json()
    assert dunning["pays_renewal"] is True
    assert dunning["url"].startswith(f"http://pay.public.test/pay/{renewal['id']}/card?t=")

    # Someone else's subscription: not found, and nothing is signed for them.
    other = await billing.client.post(
        f"/api/v1/subscriptions/{sub.id}/card", headers=as_user(uuid.uuid4())
    )
    assert other.status_code == 404 and other.json()["code"] == "subscription_not_found"


async def test_the_renewal_rate_cap_holds_across_workers(resources):
    # Two "workers" (concurrent callers) share one schedule through Redis. Each charge reserves a
    # slot for the most Stripe requests it can make; the slots never overlap, so no second —
    # wall-clock or sliding — holds more than the cap's worth (BILLING_RENEWAL_MAX_PER_SECOND;
    # real Stripe allows about 100 requests/s). Read from the slots Redis handed out: no sleeping.
    from billing.renewals.rate import STRIPE_REQUESTS_PER_CHARGE, StripeRate

    cap = 30
    key = f"{resources.settings.redis_prefix}test_rate_{uuid.uuid4().hex}"
    workers = [StripeRate(resources.redis, key, cap), StripeRate(resources.redis, key, cap)]
    slots: list[int] = []

    async def charge_many(rate: StripeRate, count: int) -> None:
        for _ in range(count):
            start, wait = await rate.reserve(STRIPE_REQUESTS_PER_CHARGE)
            assert wait >= 0
            slots.append(start)

    await asyncio.gather(*(charge_many(rate, 20) for rate in workers))
    slots.sort()
    spacing = workers[0].slot_microseconds(STRIPE_REQUESTS_PER_CHARGE)  # 100 ms at 30/s
    assert len(slots) == 40 and spacing == 100_000
    assert all(b - a >= spacing for a, b in zip(slots, slots[1:], strict=False))
    # Hence at most cap / 3 + 1 charges start in any second (each sends 2 requests, 3 at most).
    for first in slots:
        in_a_second = [s for s in slots if first <= s < first + 1_000_000]
        assert len(in_a_second) <= cap // STRIPE_REQUESTS_PER_CHARGE + 1
    # Without a cap nothing waits.
    await StripeRate(resources.redis, key, 0).wait()


async def test_a_refund_that_went_back_sends_a_receipt(billing):
    sub = await Subscriber.start(billing)  # a 14-day refund window
    billing.fake.refund_status = "succeeded"
    canceled = await sub.post("cancel")
    assert canceled.json()["action"] == "refunded"
    kinds = await sub.email_kinds()
    assert kinds == ["receipt", "refund_receipt"]
    receipt = (await sub.emails())[-1]
    assert receipt["subject"] == "Refund: Premium, $9.99"


async def test_renewal_metrics_follow_renewals_declines_and_ends(billing):
    # Counters as /metrics serves them (the worker's jobs run in this process); the due gauges
    # from the scrape-time collector at a chosen instant. The subscriptions are moved to periods
    # ending in 2000-2002, before anything other tests left, so they alone are due then.
    from billing.metrics import StateCollector
    from test_billing_health_metrics import scrape

    lead = billing.resources.settings.renewal_lead_seconds

    async def counters() -> dict[str, float]:
        samples = await scrape(billing.client)
        wanted = {
            "billing_renewal_attempts_total": "outcome",
            "billing_renewal_subscriptions_total": "status",
        }
        values: dict[str, float] = {}
        for (name, labels), value in samples.items():
            if name in wanted:
                values[f"{name}:{dict(labels)[wanted[name]]}"] = value
            elif name in (
                "billing_renewals_succeeded_total",
                "billing_renewal_lag_seconds_count",
                "billing_renewal_lag_seconds_sum",
            ):
                values[name] = value
        return values

    def moved(before: dict, after: dict) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}

    async def due(now: datetime) -> dict[str, float]:
        families = await StateCollector(
            billing.resources.engine, now=now, renewal_lead_seconds=lead
        ).families()
        return {
            f"{sample.name}:{sample.labels.get('state', '')}": sample.value
            for family in families
            if family.name.startswith("billing_renewals_due")
            for sample in family.samples
        }

    async def subscriber_ending(end: datetime) -> Subscriber:
        sub = await Subscriber.start(billing)
        async with billing.resources.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE subscriptions SET current_period_start = :start,"
                    " current_period_end = :end WHERE id = :s"
                ),
                {"start": end - 30 * DAY, "end": end, "s": sub.id},
            )
        sub.end = end
        return sub

    # Each step works at an earlier instant than the last, so a subscription renewed by one step
    # is never due in the next.
    # pay_api unreachable: an `error` attempt, and the subscription still waits (due).
    down = await subscriber_ending(datetime.fromisoformat("2003-01-01T00:00:00+00:00"))
    billing.fake.mode = "down"
    before = await counters()
    await work(billing, down.end - timedelta(minutes=30))
    assert moved(before, await counters()) == {"billing_renewal_attempts_total:error": 1}
    assert (await due(down.end - timedelta(minutes=30)))["billing_renewals_due:waiting"] == 1
    billing.fake.mode = "ok"

    # Renewed 2 hours after its end (lag 7200 s), then one renewed before its end (lag 0).
    late = await subscriber_ending(datetime.fromisoformat("2002-06-01T00:00:00+00:00"))
    state = await due(late.end + timedelta(hours=2))
    assert state["billing_renewals_due:waiting"] == 1
    assert state["billing_renewals_due_oldest_seconds:"] == lead + 7200
    before = await counters()
    await work(billing, late.end + timedelta(hours=2))
    assert (await due(late.end + timedelta(hours=2)))["billing_renewals_due:waiting"] == 0
    on_time = await subscriber_ending(datetime.fromisoformat("2002-01-01T00:00:00+00:00"))
    await work(billing, on_time.end - timedelta(minutes=30))
    assert (await sub_status(late), await sub_status(on_time)) == ("active", "active")
    assert moved(before, await counters()) == {
        "billing_renewal_attempts_total:succeeded": 2,
        "billing_renewals_succeeded_total": 2,
        "billing_renewal_lag_seconds_count": 2,
        "billing_renewal_lag_seconds_sum": 7200,
    }

    # A renewal declined: past_due, one `declined` attempt; its grace runs out: expired.
    declined = await subscriber_ending(datetime.fromisoformat("2000-01-01T00:00:00+00:00"))
    assert (await due(declined.end - 2 * timedelta(seconds=lead)))[
        "billing_renewals_due:waiting"
    ] == 0
    at = declined.end - timedelta(minutes=30)
    state = await due(at)
    assert state["billing_renewals_due:waiting"] == 1
    assert state["billing_renewals_due_oldest_seconds:"] == lead - 1800
    billing.fake.renewal_default = "card_declined"
    before = await counters()
    await work(billing, at)
    assert await sub_status(declined) == "past_due"
    assert moved(before, await counters()) == {
        "billing_renewal_attempts_total:declined": 1,
        "billing_renewal_subscriptions_total:past_due": 1,
    }
    assert await due(at) == {
        "billing_renewals_due:waiting": 0,
        "billing_renewals_due:past_due": state["billing_renewals_due:past_due"] + 1,
        "billing_renewals_due_oldest_seconds:": 0,
    }
    before = await counters()
    await work(billing, declined.end + 8 * DAY)  # past grace: canceled at pay_api, ended
    assert await sub_status(declined) == "expired"
    assert moved(before, await counters()) == {"billing_renewal_subscriptions_total:expired": 1}


async def sub_status(sub: Subscriber) -> str:
    return (await sub.row())["status"]


async def test_a_commit_while_a_batchs_ledger_charges_are_held_is_refused(billing):
    """`charges_written_together` (a batch's answers applied in one transaction) holds the
    ledger charges and writes them in one call at its end: a commit before that would lose
    them, so it is refused, and the transaction changes nothing."""
    subscriber = await Subscriber.start(billing)
    payment_id = await billing.scalar(
        "SELECT id FROM payments WHERE subscription_id = :s", s=subscriber.id
    )
    before = await billing.count("ledger_entries")
    async with billing.resources.sessionmaker() as session:
        with pytest.raises(RuntimeError, match="lose ledger charges"):
            async with charges_written_together(session):
                payment = await session.get(Payment, payment_id)
                payment.failure_message = "touched"
                session.info[HELD_CHARGES].append({"payment_id": payment_id})
                await session.commit()
        assert HELD_CHARGES not in session.info
    assert await billing.count("ledger_entries") == before
    assert (
        await billing.scalar("SELECT failure_message FROM payments WHERE id = :p", p=payment_id)
        is None
    )


async def test_a_batchs_outbox_rows_are_written_together_and_never_lost_to_an_early_commit(
    billing,
):
    """`rows_written_together` (a batch's answers applied in one transaction) holds the outbox
    rows the transaction adds (access notes, emails) and writes them in one statement at its
    end, in that transaction; a commit before that would lose them, so it is refused, and the
    transaction changes nothing."""
    from billing.notifications import emails
    from billing.outbox import TOPIC_ACCESS_CHANGED, note_access_change, rows_written_together

    user = uuid.uuid4()
    rows = "SELECT count(*) FROM outbox WHERE payload->>'user_id' = :u"
    async with billing.resources.sessionmaker() as session:
        async with rows_written_together(session):
            note_access_change(session, user, "test")
            emails.queue(
                session,
                emails.Email(kind="receipt", user_id=str(user), to="x@y.z", subject="s", text="t"),
            )
            assert await billing.scalar(rows, u=str(user)) == 0  # held, not written yet
        await session.commit()
    assert await billing.scalar(rows, u=str(user)) == 2
    topics = await billing.scalar(
        "SELECT array_agg(topic ORDER BY id) FROM outbox WHERE payload->>'user_id' = :u",
        u=str(user),
    )
    assert topics == [TOPIC_ACCESS_CHANGED, "email"]

    other = uuid.uuid4()
    async with billing.resources.sessionmaker() as session:
        with pytest.raises(RuntimeError, match="lose outbox rows"):
            async with rows_written_together(session):
                note_access_change(session, other, "test")
                await session.commit()
    assert await billing.scalar(rows, u=str(other)) == 0
