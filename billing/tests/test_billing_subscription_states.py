"""The subscription state machine (`billing.subscriptions.state`): pure, so tested without a
database — every transition from every status, and what each move writes besides the status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from billing.payments import state as payment_state
from billing.payments.models import Payment
from billing.plans.models import Plan
from billing.subscriptions import state
from billing.subscriptions.models import SUBSCRIPTION_STATUSES, Subscription

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=10), NOW + timedelta(days=20)


def _subscription(status: str) -> Subscription:
    plan = Plan(id=uuid.uuid4(), period_unit="month", period_count=1, refund_window_days=14)
    subscription = state.begin(user_id=uuid.uuid4(), plan=plan, now=START)
    subscription.status = status  # a fixture: the row as some earlier transition left it
    subscription.current_period_start, subscription.current_period_end = START, END
    return subscription


MOVES = {
    "activate": lambda s: state.activate(s, start=NOW, end=NOW + timedelta(days=30), now=NOW),
    "expire_incomplete": lambda s: state.expire_incomplete(s, now=NOW),
    "extend": lambda s: state.extend(s, end=END + timedelta(days=30), now=NOW),
    "extend_canceled": lambda s: state.extend_canceled(s, end=END + timedelta(days=30), now=NOW),
    "enter_grace": lambda s: state.enter_grace(s, grace_until=END + timedelta(days=7), now=NOW),
    "suspend": lambda s: state.suspend(s, now=NOW),
    "cancel_at_period_end": lambda s: state.cancel_at_period_end(s, now=NOW),
    "resume": lambda s: state.resume(s, now=NOW),
    "expire": lambda s: state.expire(s, now=NOW),
    "end_by_refund": lambda s: state.end_by_refund(s, now=NOW),
}


def test_every_transition_has_its_function():
    assert set(MOVES) == set(state.TRANSITIONS)


@pytest.mark.parametrize("transition", sorted(MOVES))
@pytest.mark.parametrize("status", SUBSCRIPTION_STATUSES)
def test_a_transition_moves_exactly_from_its_allowed_statuses(transition, status):
    subscription = _subscription(status)
    sources, target = state.TRANSITIONS[transition]
    moved = MOVES[transition](subscription)
    assert moved is (status in sources)
    if moved:
        assert (subscription.status, subscription.updated_at) == (target, NOW)
    else:
        assert (subscription.status, subscription.updated_at) == (status, START)


def test_the_final_statuses_are_left_only_by_a_late_first_charge():
    for status in ("expired", "refunded", "incomplete_expired"):
        allowed = {t for t in state.TRANSITIONS if state.may(t, status)}
        assert allowed == ({"activate"} if status == "incomplete_expired" else set())


def test_activate_sets_the_first_period_and_clears_an_earlier_end():
    subscription = _subscription("incomplete_expired")
    subscription.ended_at = START
    assert state.activate(subscription, start=NOW, end=NOW + timedelta(days=30), now=NOW)
    assert subscription.current_period_start == NOW
    assert subscription.current_period_end == NOW + timedelta(days=30)
    assert subscription.ended_at is None


def test_extend_runs_from_the_old_end_and_never_shortens():
    subscription = _subscription("past_due")
    assert not state.extend(subscription, end=END, now=NOW)
    assert not state.extend(subscription, end=END - timedelta(days=1), now=NOW)
    assert subscription.status == "past_due"
    assert state.extend(subscription, end=END + timedelta(days=30), now=NOW)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        END,
        END + timedelta(days=30),
    )


@pytest.mark.parametrize("end_by", [state.expire, state.end_by_refund])
def test_an_ended_subscription_never_renews(end_by):
    subscription = _subscription("active")
    assert subscription.auto_renew is True
    assert end_by(subscription, now=NOW)
    assert (subscription.auto_renew, subscription.ended_at) == (False, NOW)


def test_cancel_at_period_end_then_resume_while_the_period_lasts():
    subscription = _subscription("active")
    assert state.cancel_at_period_end(subscription, now=NOW)
    assert (subscription.auto_renew, subscription.canceled_at) == (False, NOW)
    assert state.resume(subscription, now=NOW)
    assert (subscription.status, subscription.auto_renew, subscription.canceled_at) == (
        "active",
        True,
        None,
    )


def test_resume_after_the_period_ended_is_refused():
    subscription = _subscription("canceled")
    assert not state.resume(subscription, now=END)
    assert (subscription.status, subscription.auto_renew) == ("canceled", True)


def test_flag_keeps_the_status():
    subscription = _subscription("refunded")
    state.flag(subscription, "refund failed", now=NOW)
    assert (subscription.status, subscription.needs_attention, subscription.attention_note) == (
        "refunded",
        True,
        "refund failed",
    )


# --- the payment's own moves (billing.payments.state) ------------------------------------------
def _payment(status: str) -> Payment:
    return Payment(status=status, amount=1000, updated_at=START)


def test_payment_move_follows_may_move():
    payment = _payment("pending")
    assert not payment_state.move(payment, "created", now=NOW)
    assert payment_state.move(payment, "unknown", now=NOW)
    assert not payment_state.move(payment, "succeeded", now=NOW)  # only the reconciler
    assert payment_state.move(payment, "succeeded", now=NOW, by_reconciler=True)
    assert (payment.status, payment.updated_at) == ("succeeded", NOW)


def test_a_failed_refund_brings_the_payment_back_down():
    payment = _payment("refunded")
    assert payment_state.settle_refunds(payment, amount=1000, refunded_succeeded=400, now=NOW)
    assert payment.status == "partially_refunded"
    assert payment_state.settle_refunds(payment, amount=1000, refunded_succeeded=0, now=NOW)
    assert payment.status == "succeeded"
    unpaid = _payment("failed")
    assert not payment_state.settle_refunds(unpaid, amount=1000, refunded_succeeded=0, now=NOW)
    assert unpaid.status == "failed"
