"""Subscriptions: buying a plan (subscription + first payment), listing, canceling."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import wall_now
from billing.config import Settings
from billing.errors import (
    BillingError,
    SubscriptionEnded,
    SubscriptionExists,
    SubscriptionNotCancelable,
    SubscriptionNotFound,
    SubscriptionNotResumable,
)
from billing.money import for_people
from billing.notifications.links import card_update_url, link_url
from billing.outbox import commit, note_access_change
from billing.payments import service as payments
from billing.payments.models import Payment, Refund
from billing.payments.schemas import RefundOut
from billing.payments.state import OPEN_PAYMENT_STATUSES
from billing.payments.state import PAID_STATUSES as PAID_PAYMENT_STATUSES
from billing.plans import service as plans
from billing.plans.schemas import Money
from billing.promotions import redemptions
from billing.promotions import service as promotions
from billing.refunds import service as refunds
from billing.renewals import service as renewals
from billing.resources import Resources
from billing.settlement.registration import register
from billing.subscriptions import state
from billing.subscriptions.models import PAID_STATUSES, Subscription
from billing.subscriptions.schemas import CancelOut, CardLinkOut, PurchaseOut, SubscriptionOut


async def _open_first_payment(
    session: AsyncSession, user_id: uuid.UUID, plan_id: uuid.UUID
) -> Payment | None:
    return await session.scalar(
        select(Payment).where(
            Payment.user_id == user_id,
            Payment.plan_id == plan_id,
            Payment.kind == "first",
            Payment.status.in_(OPEN_PAYMENT_STATUSES),
        )
    )


async def _purchase_out(session: AsyncSession, payment_id: uuid.UUID) -> PurchaseOut:
    payment = await session.get(Payment, payment_id, populate_existing=True)
    subscription = await session.get(Subscription, payment.subscription_id, populate_existing=True)
    (payment_out,) = await payments.present(session=session, payments=[payment])
    return PurchaseOut(
        subscription=SubscriptionOut.model_validate(subscription), payment=payment_out
    )


async def purchase(
    *,
    resources: Resources,
    session: AsyncSession,
    user_id: uuid.UUID,
    plan_id: uuid.UUID,
    now: datetime,
    promo_code: str | None = None,
) -> tuple[int, PurchaseOut]:
    """Buy a plan: 201 with a new incomplete subscription and its payment (registered with pay_api),
    or 200 with the open one (at the price it was made with). The rows are committed before
    pay_api is asked.

    The server prices it (`promotions.quote`: the code's refusals are raised before anything is
    written); a promo code's use is reserved in the same transaction as the payment. A free
    (100%-off) payment is settled here: nothing to charge, no pay_api, the subscription active."""
    settings = resources.settings
    plan = await plans.get_buyable(session=session, plan_id=plan_id)
    # A paid period that ended but that the worker has not expired yet no longer holds the plan.
    await expire_ended(
        session, Subscription.user_id == user_id, Subscription.plan_id == plan_id, now=now
    )

    status_code = 200
    payment = await _open_first_payment(session, user_id, plan_id)
    if payment is None:
        held = await session.scalar(
            select(Subscription.id).where(
                Subscription.user_id == user_id,
                Subscription.plan_id == plan_id,
                Subscription.status.in_(PAID_STATUSES),
            )
        )
        if held is not None:
            raise SubscriptionExists()
        quote = await promotions.quote(
            session=session, plan=plan, user_id=user_id, promo_code=promo_code, now=now
        )
        price = quote.price
        subscription = state.begin(user_id=user_id, plan=plan, now=now)
        payment_id = uuid.uuid4()
        payment = Payment(
            id=payment_id,
            user_id=user_id,
            subscription_id=subscription.id,
            plan_id=plan_id,
            kind="first",
            status="created",
            amount=price.net,
            gross_amount=price.gross,
            discount_amount=price.discount,
            promo_code=quote.promo_code.code if quote.source == "promo_code" else None,
            currency=plan.currency,
            description=f"{plan.name} ({plan.period_count} {plan.period_unit})",
            payment_url=None if price.free else settings.payment_url_for(str(payment_id)),
            expires_at=now + timedelta(seconds=settings.payment_ttl_seconds),
            next_check_at=now + timedelta(seconds=settings.reconcile_base_seconds),
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(subscription)
                await session.flush()
                session.add(payment)
                await session.flush()
                if quote.source == "promo_code":
                    await redemptions.reserve(
                        session,
                        promo=quote.promo_code,
                        user_id=user_id,
                        payment_id=payment_id,
                        subscription_id=subscription.id,
                        now=now,
                    )
                if price.free:
                    await settle_free(session, payment=payment, now=now, settings=settings)
            status_code = 201
        except IntegrityError:
            # A concurrent purchase of the same plan won the partial unique index.
            payment = await _open_first_payment(session, user_id, plan_id)
            if payment is None:
                raise SubscriptionExists() from None
    payment_id = payment.id
    await commit(session, resources.access_cache)
    if payment.status == "created":
        await register(resources=resources, payment_id=payment_id, now=now, raise_errors=True)
    return status_code, await _purchase_out(session, payment_id)


async def settle_free(
    session: AsyncSession, *, payment: Payment, now: datetime, settings: Settings
) -> None:
    """A payment of 0 (fully discounted) succeeds at once, through the same state machine and
    effects as a charged one (ledger row of 0, redemption confirmed, subscription active)."""
    await payments.apply_gateway_status(
        session,
        payment=payment,
        report=payments.PaymentReport(status="succeeded"),
        now=now,
        settings=settings,
    )


async def expire_ended(
    session: AsyncSession, *where, now: datetime, limit: int | None = None, skip_locked=False
) -> int:
    """Paid periods that ended (among the subscriptions matching `where`): `expired`, and the
    users' cached access decisions dropped through the outbox — unless the period's renewal is
    still open (`renewals.still_renewing`: closed at Stripe first). Flushed, not committed."""
    ended = await session.scalars(
        select(Subscription)
        .where(
            # Renewing ones (active, auto_renew) enter grace instead, and past-due ones end when
            # grace does (billing/renewals/service.py).
            or_(
                Subscription.status == "canceled",
                and_(Subscription.status == "active", Subscription.auto_renew.is_(False)),
            ),
            Subscription.current_period_end <= now,
            *where,
        )
        .order_by(Subscription.current_period_end)
        .limit(limit)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    count = 0
    for subscription in list(ended):
        if await renewals.still_renewing(session, subscription, now=now):
            continue  # ends once its open renewal has (charged: the paid period is theirs)
        if state.expire(subscription, now=now):
            note_access_change(session, subscription.user_id, "subscription expired")
            count += 1
    await session.flush()  # the sessions do not autoflush: later reads must see it
    return count


async def list_for_user(*, session: AsyncSession, user_id: uuid.UUID) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.created_at.desc(), Subscription.id)
    )
    return list(rows)


async def get_own(
    *, session: AsyncSession, user_id: uuid.UUID, subscription_id: uuid.UUID
) -> Subscription:
    subscription = await session.get(Subscription, subscription_id, populate_existing=True)
    if subscription is None or subscription.user_id != user_id:
        raise SubscriptionNotFound()
    return subscription


async def paid_payment(session: AsyncSession, subscription_id: uuid.UUID) -> Payment | None:
    """The payment that paid the subscription's current period."""
    return await session.scalar(
        select(Payment)
        .where(
            Payment.subscription_id == subscription_id,
            Payment.status.in_(PAID_PAYMENT_STATUSES),
        )
        .order_by(Payment.period_start.desc().nulls_last())
        .limit(1)
    )


async def _refunded_answer(session: AsyncSession, subscription: Subscription) -> CancelOut:
    payment = await paid_payment(session, subscription.id)
    refund = None
    if payment is not None:
        refund = await session.scalar(
            select(Refund)
            .where(Refund.payment_id == payment.id, Refund.status.in_(("pending", "succeeded")))
            .order_by(Refund.created_at.desc())
            .limit(1)
        )
    return CancelOut(
        action="refunded",
        subscription=SubscriptionOut.model_validate(subscription),
        refund=RefundOut.model_validate(refund) if refund else None,
        refund_amount=Money(amount=refund.amount, currency=refund.currency) if refund else None,
        access_until=None,
        message=(
            f"Canceled within the refund window: {for_people(refund.amount, refund.currency)} "
            "is being returned; access ended."
            if refund
            else "This subscription was ended by a refund."
        ),
    )


def _canceled_answer(subscription: Subscription) -> CancelOut:
    return CancelOut(
        action="canceled",
        subscription=SubscriptionOut.model_validate(subscription),
        access_until=subscription.current_period_end,
        message=(
            "The refund window has passed: the subscription will not renew; access lasts until "
            f"{subscription.current_period_end.isoformat()}."
        ),
    )


async def cancel(
    *,
    resources: Resources,
    session: AsyncSession,
    user_id: uuid.UUID,
    subscription_id: uuid.UUID,
    now: datetime,
) -> CancelOut:
    """Cancel: within the refund window a full refund ends it now; after it, no renewal and
    access until the end of the paid period. Repeating a cancel answers the same."""
    subscription = await get_own(session=session, user_id=user_id, subscription_id=subscription_id)
    if subscription.status == "refunded":
        return await _refunded_answer(session, subscription)
    if subscription.status == "canceled":
        return _canceled_answer(subscription)
    if not state.may("cancel_at_period_end", subscription.status):
        raise SubscriptionNotCancelable(
            f"A subscription in status {subscription.status} cannot be canceled."
        )
    payment = await paid_payment(session, subscription.id)
    window_end = (
        refunds.refund_window_end(payment, subscription.refund_window_days) if payment else None
    )
    if (
        payment is not None
        and payment.status == "succeeded"
        and payment.amount > 0  # a free payment has nothing to give back: no renewal instead
        and payment.refunded_amount == 0
        and window_end is not None
        and now <= window_end
    ):
        try:
            refund = await refunds.reserve(
                session=session,
                request=refunds.RefundRequest.by_user(
                    payment_id=payment.id, user_id=user_id, reason="requested_by_customer"
                ),
                now=now,
            )
        except BillingError:
            # Lost a race with another cancel or refund: answer from the state that won.
            await session.rollback()
            subscription = await get_own(
                session=session, user_id=user_id, subscription_id=subscription_id
            )
            if subscription.status == "refunded":
                return await _refunded_answer(session, subscription)
            raise
        refund_id = refund.id
        await commit(session, resources.access_cache)
        await refunds.submit(resources=resources, refund_id=refund_id, now=now)
        subscription = await get_own(
            session=session, user_id=user_id, subscription_id=subscription_id
        )
        return await _refunded_answer(session, subscription)

    subscription = await payments.lock_subscription(session, subscription.id)
    if state.cancel_at_period_end(subscription, now=now):
        await renewals.pause(session, subscription)
        note_access_change(session, user_id, "subscription canceled")
    await commit(session, resources.access_cache)
    if subscription.status == "refunded":
        return await _refunded_answer(session, subscription)
    return _canceled_answer(subscription)


async def resume(
    *,
    resources: Resources,
    session: AsyncSession,
    user_id: uuid.UUID,
    subscription_id: uuid.UUID,
    now: datetime,
) -> Subscription:
    """Undo a cancel at period end while the period lasts: it renews again. Resuming an active
    subscription answers it as it is; an ended one (or a period that is over) is refused."""
    subscription = await get_own(session=session, user_id=user_id, subscription_id=subscription_id)
    subscription = await payments.lock_subscription(session, subscription.id)
    if subscription.status in ("active", "past_due") and subscription.auto_renew:
        await session.commit()  # nothing to undo: the lock goes, the answer is the row
        return subscription
    if not state.resume(subscription, now=now):
        status = subscription.status
        await session.rollback()
        raise SubscriptionNotResumable(
            "This subscription's period has ended: it can no longer be resumed."
            if status == "canceled"
            else f"A subscription in status {status} cannot be resumed."
        )
    await renewals.unpause(session, subscription, now=now, settings=resources.settings)
    note_access_change(session, user_id, "subscription resumed")
    await commit(session, resources.access_cache)
    return subscription


async def card_link(
    *, resources: Resources, session: AsyncSession, user_id: uuid.UUID, subscription_id: uuid.UUID
) -> CardLinkOut:
    """A signed link for the user to give another card (their own subscription only: 404)."""
    subscription = await get_own(session=session, user_id=user_id, subscription_id=subscription_id)
    if subscription.status not in ("active", "past_due", "canceled", "suspended"):
        raise SubscriptionEnded("This subscription has ended: there is no card to update.")
    settings = resources.settings
    renewal = await renewals.open_renewal(session, subscription)
    in_dunning = renewal is not None and subscription.status == "past_due"
    renewal_id = renewal.id if renewal is not None else None
    await session.rollback()  # only read (and the row lock goes)
    if in_dunning:
        url = link_url(settings, payment_id=renewal_id, use="card")
        expires_at = wall_now() + timedelta(seconds=settings.link_ttl_seconds)
        return CardLinkOut(url=url, expires_at=expires_at, pays_renewal=True)
    url, expires_at = card_update_url(settings, user_id=user_id)
    return CardLinkOut(url=url, expires_at=expires_at, pays_renewal=False)
