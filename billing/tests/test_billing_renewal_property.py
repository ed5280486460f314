"""Property: one subscription lived for 24 simulated months — random renewals, soft declines paid
later with another card, 3-D Secure finished through the link, cancels with or without a resume,
renewals that lapse — keeps billing's invariants after every step: at most one renewal payment and
one charge per period, the paid periods one unbroken run from the first start, access exactly
while a paid (or grace) period covers now, each attempt confirmed once at the gateway."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest_asyncio
from billing.subscriptions import service as subscriptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_billing_renewals import DAY, Subscriber, work

ACTIONS = ("paid", "declined_then_new_card", "authenticated_by_link", "cancel_then_resume",
           "cancel", "lapse")  # fmt: skip


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_loop():
    return asyncio.get_running_loop()


async def _live(billing, actions: list[str]) -> None:
    fake = billing.fake
    sub = await Subscriber.start(billing, refund_window_days=0)
    first_start = (await sub.row())["current_period_start"]
    periods = 1  # paid periods so far
    ended = False
    for action in actions:
        end = (await sub.row())["current_period_end"]
        before_renewal = end - timedelta(minutes=30)
        if action in ("cancel", "cancel_then_resume"):
            # At the simulated time (the API would use the real one, before the renewal paid).
            at = (await sub.row())["current_period_start"] + DAY
            async with billing.resources.sessionmaker() as session:
                canceled = await subscriptions.cancel(
                    resources=billing.resources, session=session, user_id=sub.user,
                    subscription_id=sub.id, now=at,
                )  # fmt: skip
            assert canceled.action == "canceled"
            if action == "cancel":
                await work(billing, end + timedelta(seconds=1))
                ended = True
            else:
                async with billing.resources.sessionmaker() as session:
                    resumed = await subscriptions.resume(
                        resources=billing.resources, session=session, user_id=sub.user,
                        subscription_id=sub.id, now=at,
                    )  # fmt: skip
                assert resumed.status == "active"
        if not ended and action == "lapse":
            fake.renewal_default = "insufficient_funds"
            for moment in (before_renewal, end + DAY, end + 3 * DAY, end + 5 * DAY):
                await work(billing, moment + timedelta(seconds=1))
                await _check(billing, sub, first_start, periods, moment + timedelta(seconds=2))
            await work(billing, end + 7 * DAY + timedelta(seconds=1))
            ended = True
        elif not ended:
            fake.renewal_default = {
                "declined_then_new_card": "card_declined",
                "authenticated_by_link": "authentication_required",
            }.get(action, "succeeded")
            await work(billing, before_renewal)
            if action in ("declined_then_new_card", "authenticated_by_link"):
                row = await sub.row()
                assert row["status"] == "past_due"
                await _check(billing, sub, first_start, periods, end + DAY / 2)
                # The user follows the emailed link: pay_api charges the one payment and says so.
                renewal = (await sub.renewals())[-1]
                fake.set_payment(str(renewal["id"]), "succeeded")
                answer = await billing.event(
                    {"id": str(renewal["id"]), "amount": renewal["amount"], "currency": "usd"},
                    "succeeded",
                )
                assert answer.json() == {"applied": True}
                await work(billing, end + DAY + timedelta(seconds=1))  # a due retry finds it paid
            periods += 1
        moment = (await sub.row())["current_period_start"] + timedelta(minutes=1)
        await _check(billing, sub, first_start, periods, moment, ended=ended)
        if ended:
            break
    fake.renewal_default = "succeeded"


async def _check(billing, sub, first_start, periods, now: datetime, *, ended=False) -> None:
    row = await sub.row()
    renewals = await sub.renewals()
    # One renewal payment per period start, and one charge per paid payment.
    assert len({r["period_start"] for r in renewals}) == len(renewals)
    paid = [r for r in renewals if r["status"] == "succeeded"]
    assert await sub.ledger_charges() == 1 + len(paid)
    assert len(paid) == periods - 1
    # The paid periods are one unbroken run from the first start.
    for earlier, later in zip(
        sorted(paid, key=lambda r: r["period_start"]), paid[1:], strict=False
    ):
        assert earlier["period_end"] == later["period_start"]
    if not ended:
        assert row["current_period_end"] == first_start + periods * 30 * DAY
    # Each attempt number was confirmed once at the gateway.
    for renewal in renewals:
        confirmed = billing.fake.confirmed_attempts.get(str(renewal["id"]), [])
        assert len(confirmed) == len(set(confirmed))
    # Access follows the state.
    access = await sub.access(now)
    if row["status"] in ("active", "canceled", "past_due") and row["current_period_end"] > now:
        assert access["reason"] == "subscription"
    elif row["status"] == "past_due" and row["grace_until"] > now:
        assert access["reason"] == "grace"
    else:
        assert access["allowed"] is False, (row["status"], access)


@settings(
    max_examples=6,
    derandomize=True,  # the same examples on every run (CI included)
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(st.sampled_from(ACTIONS), min_size=24, max_size=24))
def test_24_months_of_one_subscription_keep_the_invariants(billing, session_loop, actions):
    session_loop.run_until_complete(_live(billing, actions))
