"""What a renewal's news does to its subscription, inside the caller's transaction (the payment
and the subscription row-locked). No pay_api calls here: `service.py` asks, this applies.

* paid → the next period runs from the old end (`extend`; `extend_canceled` when the user canceled
  meanwhile: the paid period is honored), a receipt;
* an attempt declined → `past_due` with grace until the old end + grace; a soft decline is retried
  on the schedule, a hard one and `authentication_required` wait for the user (emailed links);
* the payment ended unpaid (its grace ran out: canceled at Stripe) → `expired`, an email.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.db import held_row
from billing.metrics import RENEWAL_LAG_SECONDS, RENEWAL_SUBSCRIPTIONS, RENEWALS_SUCCEEDED
from billing.notifications import emails
from billing.notifications.links import link_url
from billing.outbox import note_access_change
from billing.payments.models import Payment
from billing.plans.models import Plan
from billing.renewals.policy import Outcome, RenewalPolicy
from billing.subscriptions import state
from billing.subscriptions.models import Subscription

logger = logging.getLogger(__name__)


async def about(
    session: AsyncSession, settings: Settings, subscription: Subscription
) -> emails.About:
    plan = held_row(session, Plan, subscription.plan_id) or await session.get(
        Plan, subscription.plan_id
    )
    return emails.About(
        settings=settings,
        user_id=subscription.user_id,
        subscription_id=subscription.id,
        plan_name=plan.name if plan else "Subscription",
    )


async def queue_receipt(
    session: AsyncSession, settings: Settings, subscription: Subscription, payment: Payment
) -> None:
    """The receipt of a paid payment, a first one or a renewal, for the period it paid."""
    email = emails.receipt(
        await about(session, settings, subscription),
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        discount_amount=payment.discount_amount,
        promo_code=payment.promo_code,
        period_start=payment.period_start,
        period_end=payment.period_end,
        renewal=payment.kind == "renewal",
    )
    emails.queue(session, email)


def _is_current(payment: Payment, subscription: Subscription) -> bool:
    """The renewal of the subscription's current period (not a stale one)."""
    return payment.period_start == subscription.current_period_end


async def on_paid(
    session: AsyncSession,
    *,
    payment: Payment,
    subscription: Subscription,
    now: datetime,
    settings: Settings,
) -> None:
    """A renewal succeeded (its ledger row is written by the caller)."""
    payment.next_charge_at = None
    extend = state.extend_canceled if subscription.status == "canceled" else state.extend
    if not (
        _is_current(payment, subscription) and extend(subscription, end=payment.period_end, now=now)
    ):
        # Money was taken for a period the subscription can no longer have: a manager refunds.
        logger.error(
            "renewal paid for a subscription that cannot take it",
            extra={"payment_id": str(payment.id), "status": subscription.status},
        )
        state.flag(subscription, f"renewal {payment.id} paid while {subscription.status}", now=now)
        return
    note_access_change(session, subscription.user_id, "subscription renewed")
    RENEWALS_SUCCEEDED.inc()
    RENEWAL_LAG_SECONDS.observe(max(0.0, (now - payment.period_start).total_seconds()))
    await queue_receipt(session, settings, subscription, payment)


async def on_unpaid(
    session: AsyncSession,
    *,
    payment: Payment,
    subscription: Subscription,
    now: datetime,
    settings: Settings,
) -> None:
    """A renewal ended unpaid (its grace ran out and it was canceled at Stripe, or Stripe gave
    up): a subscription in dunning ends; one the user canceled ends at its period's end anyway."""
    payment.next_charge_at = None
    if not (
        _is_current(payment, subscription) and subscription.status in ("past_due", "suspended")
    ):
        return
    await end(
        session,
        subscription=subscription,
        now=now,
        settings=settings,
        reason="the renewal could not be charged",
    )


async def end(
    session: AsyncSession,
    *,
    subscription: Subscription,
    now: datetime,
    settings: Settings,
    reason: str,
) -> bool:
    """Expire the subscription now (no access, no renewal), and tell the user."""
    in_dunning = subscription.status in ("past_due", "suspended")
    if not state.expire(subscription, now=now):
        return False
    if in_dunning:
        RENEWAL_SUBSCRIPTIONS.labels("expired").inc()
    note_access_change(session, subscription.user_id, "subscription ended")
    emails.queue(
        session,
        emails.subscription_ended(
            await about(session, settings, subscription), ended_at=now, reason=reason
        ),
    )
    return True


async def after_attempt(
    session: AsyncSession,
    *,
    payment: Payment,
    subscription: Subscription,
    outcome: Outcome,
    failure_code: str | None,
    failure_message: str | None,
    now: datetime,
    settings: Settings,
) -> None:
    """Dunning after one attempt that did not pay (the payment's status is already applied)."""
    payment.next_charge_at = None
    if outcome in (Outcome.PAID, Outcome.IN_FLIGHT, Outcome.CLOSED):
        return  # paid (on_paid ran), money moving (the reconciler settles), or over (on_unpaid)
    if not _is_current(payment, subscription):
        return
    policy = RenewalPolicy.from_settings(settings)
    grace_until = policy.grace_until(payment.period_start)
    if state.enter_grace(subscription, grace_until=grace_until, now=now):
        note_access_change(session, subscription.user_id, "renewal declined: grace")
        RENEWAL_SUBSCRIPTIONS.labels("past_due").inc()
    state.record_decline(subscription, code=failure_code, message=failure_message, now=now)
    if subscription.status != "past_due":
        return  # canceled meanwhile: nothing more to ask of the user
    told = await about(session, settings, subscription)
    if outcome is Outcome.AUTHENTICATION:
        email = emails.action_required(
            told,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            authenticate_url=link_url(settings, payment_id=payment.id, use="authenticate"),
            grace_until=grace_until,
        )
    else:
        retry_at = None
        if outcome is Outcome.SOFT_DECLINE:
            retry_at = policy.next_retry_at(
                payment.period_start, attempts_done=payment.charge_attempts, now=now
            )
        payment.next_charge_at = retry_at
        card_url = link_url(settings, payment_id=payment.id, use="card")
        if outcome is Outcome.SOFT_DECLINE and retry_at is None:
            email = emails.last_warning(
                told, payment_id=payment.id, card_url=card_url, grace_until=grace_until
            )
        else:
            email = emails.renewal_failed(
                told,
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                reason=failure_message or "your bank declined the payment.",
                card_url=card_url,
                next_retry_at=retry_at,
                grace_until=grace_until,
            )
    emails.queue(session, email)
