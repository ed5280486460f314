"""Renewals with I/O: writing the renewal payments that fall due, charging them through pay_api,
moving subscriptions at their period's end and grace's end; the user's and the manager's actions.

Safety (docs/design.md, "Renewals"): the renewal payment is written — ONE per (subscription,
period start), a unique index — and committed before pay_api hears of it; every attempt of that
period (the schedule's, a manager's "retry now", the user's card or 3-D Secure link) works on that
one payment, hence on its one PaymentIntent; attempts are numbered and pay_api confirms a number at
most once, so a lost answer is asked again without a second charge.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import literal, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import wall_now
from billing.config import Settings
from billing.db import lock_rows
from billing.metrics import RENEWAL_ATTEMPTS, RENEWAL_SUBSCRIPTIONS
from billing.outbox import commit, note_access_change, rows_written_together
from billing.pay_api import PayApiRejected, PayApiUnavailable
from billing.payments.models import Payment
from billing.payments.service import charges_written_together, lock_payment, lock_subscription
from billing.payments.state import OPEN_PAYMENT_STATUSES
from billing.plans.models import Plan
from billing.renewals import transitions
from billing.renewals.policy import NO_SAVED_CARD, OUTCOME_LABELS, Outcome, RenewalPolicy
from billing.renewals.pricing import RenewalPrice, renewal_amounts
from billing.renewals.rate import STRIPE_REQUESTS_PER_CHARGE, StripeRate
from billing.resources import Resources
from billing.settlement.answers import PaymentReport, apply_payment_report
from billing.subscriptions import state
from billing.subscriptions.models import Subscription
from billing.subscriptions.periods import period_end
from billing.subscriptions.schemas import RenewalState

logger = logging.getLogger(__name__)


def _inline(value: str):
    """A constant written into the SQL rather than sent as a parameter: the worker's statements
    are prepared, and PostgreSQL's generic plan of a prepared statement can use a partial index
    (`ix_payments_renewal_next_charge`, `uq_payments_renewal_period`,
    `ix_subscriptions_period_end_paid`) only when the constants its predicate names are in the
    text (with parameters, the generic plan of the write-ahead query below scanned every due
    subscription each pass: found with 100k due)."""
    return literal(value, literal_execute=True)


def due_for_charge(now: datetime) -> tuple:
    """The renewal payments the worker charges now (conditions for its lease)."""
    return (
        Payment.kind == _inline("renewal"),
        Payment.status.in_((_inline("created"), _inline("pending"))),
        Payment.next_charge_at <= now,
        Payment.expires_at > now,
    )


def _current_renewal(subscription: Subscription | type[Subscription]) -> tuple:
    """Conditions on payments: the renewal of the subscription's current period (the one that
    starts where the period ends). `subscription` is a row, or the class itself in a query over
    subscriptions."""
    return (
        Payment.subscription_id == subscription.id,
        Payment.kind == _inline("renewal"),
        Payment.period_start == subscription.current_period_end,
    )


def _renewing_by(moment: datetime) -> tuple:
    """Conditions on subscriptions: active, set to renew, and the period ends by `moment`."""
    return (
        Subscription.status == _inline("active"),
        Subscription.auto_renew.is_(True),
        Subscription.current_period_end <= moment,
    )


async def _lock_batch(
    session: AsyncSession, settings: Settings, *conditions, order_by=None, limit: int | None = None
) -> list[Subscription]:
    """A worker's batch of the subscriptions that meet `conditions` (up to `limit`, the worker's
    batch size by default), row-locked; rows another worker holds are skipped (it is working on
    them)."""
    query = select(Subscription).where(*conditions)
    if order_by is not None:
        query = query.order_by(order_by)
    query = query.limit(limit or settings.worker_batch_size).with_for_update(skip_locked=True)
    return list(await session.scalars(query))


async def write_due(resources: Resources, now: datetime) -> int:
    """Write the renewal payment of each active subscription whose period ends within the lead
    time (once per period: the unique index decides between concurrent workers)."""
    settings = resources.settings
    policy = RenewalPolicy.from_settings(settings)
    written = 0
    async with resources.sessionmaker() as session:
        due = await _lock_batch(
            session,
            settings,
            *_renewing_by(now + policy.lead),
            # OFFSET 0 keeps this a per-row probe of `uq_payments_renewal_period`: flattened
            # into an anti-join, PostgreSQL's estimate of renewal rows (stale after thousands
            # were just written) chose to compare every due subscription with every renewal —
            # 200 ms to seconds a pass with 100k due (bench/README.md); the probe costs 1.5 ms.
            ~select(literal_column("1"))
            .where(*_current_renewal(Subscription))
            .offset(literal_column("0"))
            .exists(),
            order_by=Subscription.current_period_end,
            limit=pass_size(settings),
        )
        if due:
            prices = await renewal_amounts(session=session, subscriptions=due)
            rows = [_renewal_row(s, prices[s.id], now=now, settings=settings) for s in due]
            written = len(
                list(
                    # Parameters as a list (not `.values(rows)`): one statement compiled once
                    # and cached, its rows sent as one multi-row INSERT.
                    await session.scalars(
                        insert(Payment)
                        .on_conflict_do_nothing(
                            index_elements=["subscription_id", "period_start"],
                            index_where=text("kind = 'renewal'"),
                        )
                        .returning(Payment.id),
                        rows,
                    )
                )
            )
        await session.commit()
    return written


def _renewal_row(
    subscription: Subscription, price: RenewalPrice, *, now: datetime, settings: Settings
) -> dict:
    """The renewal payment of the subscription's next period, as a row to insert."""
    policy = RenewalPolicy.from_settings(settings)
    start = subscription.current_period_end
    payment_id = uuid.uuid4()
    return dict(
        id=payment_id,
        user_id=subscription.user_id,
        subscription_id=subscription.id,
        plan_id=subscription.plan_id,
        kind="renewal",
        status="created",
        **asdict(price),
        refunded_amount=0,
        payment_url=settings.payment_url_for(str(payment_id)),
        period_start=start,
        period_end=period_end(
            start, unit=subscription.period_unit, count=subscription.period_count
        ),
        # Unpaid when grace ends: canceled at Stripe (expire_payments), never charged later.
        expires_at=policy.grace_until(start),
        next_check_at=now + timedelta(seconds=settings.reconcile_base_seconds),
        next_charge_at=max(policy.due_at(start), now),
        charge_attempts=0,
        check_attempts=0,
        created_at=now,
        updated_at=now,
    )


def batch_size(settings: Settings) -> int:
    """Renewals charged in one call to pay_api. Under a Stripe rate cap a batch's requests leave
    together, so a batch is kept to a twelfth of the cap: with evenly spaced slots, any second then
    holds at most about cap·2/3 + 4·batch ≤ cap requests of two-request charges
    (billing/renewals/rate.py; bench/README.md measures it)."""
    size = settings.renewal_batch_size
    if settings.renewal_max_per_second > 0:
        size = min(size, max(1, settings.renewal_max_per_second // 12))
    return size


def pass_size(settings: Settings) -> int:
    """Renewals one worker pass writes and charges (and receipts it sends): each of the
    BILLING_RENEWAL_CONCURRENCY loops charges two batches a pass, so a loop leases its second
    batch while the others are still out, and the pass's other jobs (outbox, emails), during which
    this worker has no batch in flight, come round less often. Never less than the worker's batch
    size (BILLING_WORKER_BATCH_SIZE)."""
    return max(settings.worker_batch_size, batch_size(settings) * settings.renewal_concurrency * 2)


def _charge_item(settings: Settings, payment: Payment, attempt: int) -> dict:
    """One renewal of a batch for pay_api: its registration (`POST /payments`'s body) and the
    attempt."""
    gross = payment.gross_amount
    return {
        "payment_id": str(payment.id),
        "user_id": str(payment.user_id),
        "amount": payment.amount,
        "currency": payment.currency,
        "description": payment.description,
        "return_url": settings.return_url_for(str(payment.id)),
        "gross_amount": payment.amount + payment.discount_amount if gross is None else gross,
        "discount_amount": payment.discount_amount,
        "promo_code": payment.promo_code,
        "attempt": attempt,
    }


@dataclass
class _Asked:
    """What pay_api said about one renewal of a batch — its payment, a refusal (4xx code), or
    nothing (no answer, or an error whose outcome is unknown: the same attempt goes again) — and
    the attempt number asked (read before asking: another worker that took the renewal after
    this one's lease ran out sent the same number, and both record that one)."""

    attempt: int
    answer: dict | None = None
    refused: str | None = None


async def charge(resources: Resources, payment_id: uuid.UUID, now: datetime) -> None:
    """One attempt of one renewal payment the caller holds the lease of (`charge_batch`)."""
    await charge_batch(resources, [payment_id], now)


async def charge_batch(resources: Resources, payment_ids: list[uuid.UUID], now: datetime) -> None:
    """One attempt of each renewal payment the caller holds the lease of, in ONE call to pay_api
    (`POST /internal/v1/renewals/charges`: registered if new, then charged off-session as its
    attempt number). No transaction is open while pay_api is asked; the answers are applied in
    one transaction, or one by one if that fails (a deadlock, say), so one never waits for
    another's trouble."""
    settings = resources.settings
    async with resources.sessionmaker() as session:
        payments = sorted(
            await session.scalars(select(Payment).where(Payment.id.in_(payment_ids))),
            key=lambda p: p.id,
        )
    asked = {p.id: _Asked(attempt=p.charge_attempts + 1) for p in payments}
    to_charge = []
    for payment in payments:
        if payment.amount == 0:
            # Fully discounted (promotions): nothing to charge, it succeeds as it is.
            asked[payment.id].answer = {"status": "succeeded"}
        else:
            to_charge.append(payment)
    asked_at = wall_now()
    if to_charge:
        await StripeRate(
            resources.redis,
            f"{settings.redis_prefix}renewal_stripe_rate",
            settings.renewal_max_per_second,
        ).wait(STRIPE_REQUESTS_PER_CHARGE * len(to_charge))
        items = [_charge_item(settings, p, asked[p.id].attempt) for p in to_charge]
        try:
            results = await resources.pay_api.charge_renewals(items)
        except PayApiRejected as exc:  # the whole batch refused: a bug of ours, not the user's
            logger.error("pay_api refused a batch of renewals", extra={"code": exc.code})
        except PayApiUnavailable:
            pass  # answers unknown: the same attempt numbers are sent again (confirmed once)
        else:
            for payment, result in zip(to_charge, results, strict=True):
                _read_result(asked[payment.id], payment.id, result)
    try:
        async with resources.sessionmaker() as session:
            # Every row the answers touch, locked up front in two statements (payments, then
            # their subscriptions, each in id order: as every single path locks them), and the
            # plans the emails name — held here, as the session keeps only weak references to
            # rows nobody changed, and would read each again for every renewal.
            held = (
                await lock_rows(session, Payment, [p.id for p in payments]),
                await lock_rows(session, Subscription, [p.subscription_id for p in payments]),
                list(
                    await session.scalars(
                        select(Plan).where(Plan.id.in_({p.plan_id for p in payments}))
                    )
                ),
            )
            async with charges_written_together(session), rows_written_together(session):
                outcomes = [
                    await _apply_attempt(session, resources, p.id, asked[p.id], asked_at, now)
                    for p in payments
                ]
            await commit(session, resources.access_cache)
            del held
    except Exception:
        logger.warning(
            "renewal answers could not be applied together; applying them one by one",
            exc_info=True,
        )
        outcomes = []
        for payment in payments:
            async with resources.sessionmaker() as session:
                outcome = await _apply_attempt(
                    session, resources, payment.id, asked[payment.id], asked_at, now
                )
                await commit(session, resources.access_cache)
            outcomes.append(outcome)
    for label in outcomes:
        RENEWAL_ATTEMPTS.labels(label).inc()


def _read_result(asked: _Asked, payment_id: uuid.UUID, result: dict) -> None:
    if isinstance(result.get("payment"), dict):
        asked.answer = result["payment"]
        return
    error = result.get("error") if isinstance(result.get("error"), dict) else {}
    status, code = error.get("status"), str(error.get("code", "error"))
    if isinstance(status, int) and 400 <= status < 500:
        if code != NO_SAVED_CARD:
            logger.error(
                "pay_api refused a renewal charge",
                extra={"payment_id": str(payment_id), "code": code},
            )
        asked.refused = code
    # otherwise (Stripe unavailable, …) the outcome is unknown: asked again later


async def _apply_attempt(
    session: AsyncSession,
    resources: Resources,
    payment_id: uuid.UUID,
    asked: _Asked,
    asked_at: datetime,
    now: datetime,
) -> str:
    """What one attempt's answer does (in the caller's transaction): the payment's status, the
    dunning, the lease released. Returns the attempt's metric label."""
    settings = resources.settings
    payment = await lock_payment(session, payment_id)
    payment.claimed_until = None
    if asked.answer is None and asked.refused != NO_SAVED_CARD:
        payment.next_charge_at = now + _backoff(settings, payment)
        payment.check_attempts += 1
        return "error"
    attempt = asked.attempt
    payment.charge_attempts = max(payment.charge_attempts, attempt)
    payment.check_attempts = 0
    subscription = await lock_subscription(session, payment.subscription_id)
    if asked.answer is not None:
        report = PaymentReport.from_answer(asked.answer, asked_at=asked_at)
        await apply_payment_report(
            session, payment=payment, report=report, now=now, settings=settings
        )
        policy = RenewalPolicy.from_settings(settings)
        outcome = policy.outcome(report.status, report.failure_code)
        code, message = report.failure_code, report.failure_message
    else:
        outcome = Outcome.HARD_DECLINE
        code, message = NO_SAVED_CARD, "there is no saved card to charge."
    await transitions.after_attempt(
        session,
        payment=payment,
        subscription=subscription,
        outcome=outcome,
        failure_code=code,
        failure_message=message,
        now=now,
        settings=settings,
    )
    logger.info(
        "renewal attempt",
        extra={"payment_id": str(payment_id), "attempt": attempt, "outcome": outcome},
    )
    return OUTCOME_LABELS[outcome]


def _backoff(settings, payment: Payment) -> timedelta:
    seconds = settings.reconcile_base_seconds * 2 ** min(payment.check_attempts, 16)
    return timedelta(seconds=min(settings.reconcile_max_seconds, seconds))


async def move_at_period_end(resources: Resources, now: datetime) -> int:
    """Active subscriptions whose period ended unrenewed enter grace (`past_due`); past-due ones
    whose grace ran out end — `suspended` while their renewal may still be charged (processing),
    `expired` when nothing can pay it any more (an open one is canceled at Stripe first by
    expire_payments, whose answer then ends the subscription)."""
    settings = resources.settings
    policy = RenewalPolicy.from_settings(settings)
    moved = 0
    async with resources.sessionmaker() as session:
        for subscription in await _lock_batch(session, settings, *_renewing_by(now)):
            grace_until = policy.grace_until(subscription.current_period_end)
            if state.enter_grace(subscription, grace_until=grace_until, now=now):
                note_access_change(session, subscription.user_id, "period ended unrenewed: grace")
                RENEWAL_SUBSCRIPTIONS.labels("past_due").inc()
                moved += 1
        out_of_grace = await _lock_batch(
            session,
            settings,
            Subscription.status == _inline("past_due"),  # ix_subscriptions_grace_past_due
            Subscription.grace_until <= now,
        )
        for subscription in out_of_grace:
            renewal = await session.scalar(select(Payment).where(*_current_renewal(subscription)))
            if renewal is not None and renewal.status in ("processing", "unknown"):
                changed = state.suspend(subscription, now=now)
                if changed:
                    RENEWAL_SUBSCRIPTIONS.labels("suspended").inc()
            elif renewal is not None and renewal.status in OPEN_PAYMENT_STATUSES:
                continue  # expire_payments cancels it at Stripe; its answer ends this
            else:
                changed = await transitions.end(
                    session,
                    subscription=subscription,
                    now=now,
                    settings=settings,
                    reason="the renewal was not paid during the grace period",
                )
            if changed:
                note_access_change(session, subscription.user_id, "grace ended")
                moved += 1
        await commit(session, resources.access_cache)
    return moved


async def open_renewal(session: AsyncSession, subscription: Subscription) -> Payment | None:
    """The renewal payment of the current period while it can still be charged, row-locked."""
    return await session.scalar(
        select(Payment)
        .where(*_current_renewal(subscription), Payment.status.in_(("created", "pending")))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def still_renewing(
    session: AsyncSession, subscription: Subscription, *, now: datetime
) -> bool:
    """Whether a subscription whose period ended unrenewed (canceled, or not renewing) must wait
    before it ends: its renewal payment of that period is still open, and money may be moving (an
    attempt whose answer was lost, a charge still processing) — if it was taken, the paid period
    is the user's (`transitions.on_paid`: extend_canceled), never a charge for an ended
    subscription. The open renewal is closed at Stripe now: its deadline becomes now, so
    `expire_payments` cancels it at pay_api, and pay_api's answer decides (charged: the period
    is extended; closed unpaid: the subscription ends at the next pass)."""
    renewal_id = await session.scalar(
        select(Payment.id).where(
            Payment.subscription_id == subscription.id,
            Payment.kind == "renewal",
            Payment.period_start == subscription.current_period_end,
            Payment.status.in_(OPEN_PAYMENT_STATUSES),
        )
    )
    if renewal_id is None:
        return False
    # SKIP LOCKED: a renewal being charged right now holds its row (and then locks the
    # subscription this transaction holds): wait for the next pass instead of a deadlock.
    renewal = await session.scalar(
        select(Payment)
        .where(Payment.id == renewal_id, Payment.status.in_(OPEN_PAYMENT_STATUSES))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if renewal is not None:
        renewal.next_charge_at = None
        renewal.expires_at = min(renewal.expires_at, now)
    return True


async def pause(session: AsyncSession, subscription: Subscription) -> None:
    """Canceled at period end: no automatic attempt any more (the payment stays until its grace
    deadline, so a resume can use it; only the user's own link could still pay it)."""
    renewal = await open_renewal(session, subscription)
    if renewal is not None:
        renewal.next_charge_at = None


async def unpause(session: AsyncSession, subscription: Subscription, *, now: datetime, settings):
    """Resumed: the period's renewal is charged on its schedule again."""
    renewal = await open_renewal(session, subscription)
    if renewal is not None:
        policy = RenewalPolicy.from_settings(settings)
        renewal.next_charge_at = max(policy.due_at(renewal.period_start), now)


async def retry_now(session: AsyncSession, subscription: Subscription, *, now: datetime) -> bool:
    """A manager's "retry now" (also after a hard decline): the next worker pass charges it."""
    renewal = await open_renewal(session, subscription)
    if renewal is None or subscription.status not in ("active", "past_due"):
        return False
    renewal.next_charge_at = now
    return True


async def end_now(
    session: AsyncSession, subscription: Subscription, *, now: datetime, settings
) -> bool:
    """A manager ends the subscription now: no access, no renewal; an open renewal payment is
    closed at Stripe by expire_payments (its deadline is now), so it can never be charged."""
    renewal = await open_renewal(session, subscription)
    if renewal is not None:
        renewal.next_charge_at = None
        renewal.expires_at = now
    return await transitions.end(
        session, subscription=subscription, now=now, settings=settings, reason="ended by the cinema"
    )


async def renewal_states(
    session: AsyncSession, subscriptions: list[Subscription], *, settings
) -> dict[uuid.UUID, RenewalState]:
    """For the admin: each subscription's current renewal (next date, payment, next retry)."""
    policy = RenewalPolicy.from_settings(settings)
    states: dict[uuid.UUID, RenewalState] = {}
    for subscription in subscriptions:
        if subscription.current_period_end is None:
            continue
        renewal = await session.scalar(select(Payment).where(*_current_renewal(subscription)))
        renews = subscription.auto_renew and subscription.status in ("active", "past_due")
        states[subscription.id] = RenewalState(
            next_renewal_at=policy.due_at(subscription.current_period_end) if renews else None,
            payment_id=renewal.id if renewal else None,
            payment_status=renewal.status if renewal else None,
            attempts=renewal.charge_attempts if renewal else 0,
            next_retry_at=renewal.next_charge_at if renewal else None,
        )
    return states
