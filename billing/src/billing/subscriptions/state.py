"""The subscription state machine: the ONE place a subscription's status is written. Pure, no I/O
(as `billing.payments.state` is for payments): each transition checks that the move is allowed,
changes the row in memory and answers whether it moved; callers lock the row
(`lock_subscription`), write the outbox note when access changed, and commit.

    incomplete ──activate──► active ──enter_grace──► past_due ──suspend──► suspended
        │                    ▲  │  ◄───extend (a renewal paid)───┘ ◄───extend───┘
        │expire_incomplete   │  └──cancel_at_period_end──► canceled ──resume──► active
        ▼                    │
    incomplete_expired ──activate (charged after we gave up)
    active | past_due | suspended | canceled ──expire──► expired      (the paid period ended)
    incomplete | active | past_due | suspended | canceled ──end_by_refund──► refunded

`expired`, `refunded` and `incomplete_expired` are final, except that a first payment Stripe
charged after we gave up still activates an `incomplete_expired` one (the money was taken).
`suspended`: a renewal's grace ran out while its payment was still open (money may be moving);
no access, the plan stays held (the partial unique index) until that payment succeeds (extend) or
ends unpaid (expire). A grace that runs out with nothing open expires the subscription at once.
`extend_canceled`: a renewal charged before the user's cancel could stop it — the paid period is
honored and the subscription stays canceled.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from billing.plans.models import Plan
from billing.subscriptions.models import Subscription

# Which statuses each transition may start from, and where it leads.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "activate": (frozenset({"incomplete", "incomplete_expired"}), "active"),
    "expire_incomplete": (frozenset({"incomplete"}), "incomplete_expired"),
    "extend": (frozenset({"active", "past_due", "suspended"}), "active"),
    # A renewal charged before the user's cancel reached it: the paid period is honored, and the
    # subscription stays canceled (no later renewal).
    "extend_canceled": (frozenset({"canceled"}), "canceled"),
    "enter_grace": (frozenset({"active"}), "past_due"),
    "suspend": (frozenset({"past_due"}), "suspended"),
    "cancel_at_period_end": (frozenset({"active", "past_due"}), "canceled"),
    "resume": (frozenset({"canceled"}), "active"),
    "expire": (frozenset({"active", "past_due", "suspended", "canceled"}), "expired"),
    "end_by_refund": (
        frozenset({"incomplete", "active", "past_due", "suspended", "canceled"}),
        "refunded",
    ),
}


def may(transition: str, status: str) -> bool:
    """Whether a subscription in `status` may take `transition`."""
    sources, _ = TRANSITIONS[transition]
    return status in sources


def _move(subscription: Subscription, transition: str, now: datetime) -> bool:
    if not may(transition, subscription.status):
        return False
    subscription.status = TRANSITIONS[transition][1]
    subscription.updated_at = now
    return True


def begin(*, user_id: uuid.UUID, plan: Plan, now: datetime) -> Subscription:
    """A new subscription waiting for its first payment (`incomplete`), on the plan's terms (a
    later edit of the plan does not change them)."""
    return Subscription(
        id=uuid.uuid4(),
        user_id=user_id,
        plan_id=plan.id,
        status="incomplete",
        period_unit=plan.period_unit,
        period_count=plan.period_count,
        refund_window_days=plan.refund_window_days,
        auto_renew=True,
        created_at=now,
        updated_at=now,
    )


def activate(subscription: Subscription, *, start: datetime, end: datetime, now: datetime) -> bool:
    """The first payment succeeded: `active` for its first period [start, end)."""
    if not _move(subscription, "activate", now):
        return False
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.ended_at = None
    return True


def expire_incomplete(subscription: Subscription, *, now: datetime) -> bool:
    """The first payment ended unpaid: the user may buy again."""
    if not _move(subscription, "expire_incomplete", now):
        return False
    subscription.ended_at = now
    return True


def extend(subscription: Subscription, *, end: datetime, now: datetime) -> bool:
    """A renewal was paid: the next period runs from the old end (not from now) to `end`."""
    return _extend(subscription, "extend", end=end, now=now)


def extend_canceled(subscription: Subscription, *, end: datetime, now: datetime) -> bool:
    """A renewal paid although the user canceled meanwhile: the period is theirs, still canceled."""
    return _extend(subscription, "extend_canceled", end=end, now=now)


def _extend(subscription: Subscription, transition: str, *, end: datetime, now: datetime) -> bool:
    old_end = subscription.current_period_end
    if old_end is None or end <= old_end or not _move(subscription, transition, now):
        return False
    subscription.current_period_start, subscription.current_period_end = old_end, end
    subscription.past_due_since = subscription.grace_until = None
    subscription.last_decline_code = subscription.last_decline_message = None
    return True


def enter_grace(subscription: Subscription, *, grace_until: datetime, now: datetime) -> bool:
    """A renewal failed (or was not paid by the period's end): `past_due`, access kept until
    `grace_until`."""
    if not _move(subscription, "enter_grace", now):
        return False
    subscription.past_due_since = now
    subscription.grace_until = grace_until
    return True


def record_decline(
    subscription: Subscription, *, code: str | None, message: str | None, now: datetime
) -> None:
    """Why the last renewal attempt did not go through (the status does not change)."""
    subscription.last_decline_code, subscription.last_decline_message = code, message
    subscription.updated_at = now


def suspend(subscription: Subscription, *, now: datetime) -> bool:
    """Retries and grace ran out: no access, the plan still held until it expires."""
    return _move(subscription, "suspend", now)


def cancel_at_period_end(subscription: Subscription, *, now: datetime) -> bool:
    """No renewal: access lasts until `current_period_end`."""
    if not _move(subscription, "cancel_at_period_end", now):
        return False
    subscription.auto_renew = False
    subscription.canceled_at = now
    return True


def resume(subscription: Subscription, *, now: datetime) -> bool:
    """Undo a cancel at period end, while the period lasts: it renews again."""
    end = subscription.current_period_end
    if end is None or now >= end or not _move(subscription, "resume", now):
        return False
    subscription.auto_renew = True
    subscription.canceled_at = None
    return True


def expire(subscription: Subscription, *, now: datetime) -> bool:
    """The paid period ended (or grace ran out for good): no access, no renewal."""
    return _end(subscription, "expire", now)


def end_by_refund(subscription: Subscription, *, now: datetime) -> bool:
    """A refund ended it at once: no access, no renewal."""
    return _end(subscription, "end_by_refund", now)


def _end(subscription: Subscription, transition: str, now: datetime) -> bool:
    if not _move(subscription, transition, now):
        return False
    subscription.auto_renew = False
    subscription.ended_at = now
    return True


def flag(subscription: Subscription, note: str, *, now: datetime) -> None:
    """Something a manager must look at (the status does not change)."""
    subscription.needs_attention = True
    subscription.attention_note = note
    subscription.updated_at = now
