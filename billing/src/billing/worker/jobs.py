"""The worker's jobs. Each takes a batch of rows with `SELECT … FOR UPDATE SKIP LOCKED` and puts a
short lease on them (`claimed_until`), so several workers can run at once without taking the same
row, and no row lock is held while pay_api is being asked. A crashed worker's lease runs out.

Every answer from pay_api goes through the same state machine as the events do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import BigInteger, and_, any_, bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import CLOCK, note_worker_pass, wall_now
from billing.db import utcnow
from billing.notifications import smtp
from billing.outbox import (
    TOPIC_CATALOG_CHANGED,
    TOPIC_EMAIL,
    OutboxMessage,
    commit,
    notify_access_changes,
)
from billing.pay_api import PayApiError, PayApiRejected, PayApiUnavailable
from billing.payments import state
from billing.payments.models import Payment, Refund
from billing.payments.service import (
    PaymentReport,
    lease_free,
    lease_until,
    lock_payment,
    schedule_check,
)
from billing.payments.state import OPEN_PAYMENT_STATUSES
from billing.pruning import prune
from billing.refunds.service import (
    apply_refund_status,
    lock_refund,
    schedule_refund_check,
    submit,
)
from billing.renewals import service as renewals
from billing.resources import Resources
from billing.settlement.answers import apply_payment_report
from billing.settlement.registration import register
from billing.subscriptions.service import expire_ended

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"  # this worker, to the test clock


async def claim_batch(
    session: AsyncSession,
    model: type,
    *conditions,
    seconds: int,
    limit: int,
    order_by=None,
) -> list[uuid.UUID]:
    """Lease up to `limit` rows matching `conditions` that nobody else holds; committed. One
    statement: the rows are picked (`FOR UPDATE SKIP LOCKED`) and leased in the same UPDATE.
    A lease is real time (`payments.service.lease_until`): it keeps other processes off the row
    whatever billing's clock says."""
    picked = (
        select(model.id)
        .where(*conditions, lease_free(model))
        .order_by(model.next_check_at if order_by is None else order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(
        await session.scalars(
            update(model)
            .where(model.id.in_(picked.scalar_subquery()))
            .values(claimed_until=lease_until(seconds))
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
    await session.commit()
    return ids


async def _each_leased(
    resources: Resources,
    now: datetime,
    handle: Callable[[Resources, uuid.UUID, datetime], Awaitable[None]],
    model: type,
    *conditions,
    order_by=None,
    concurrency: int = 1,
) -> int:
    """`handle` each row matching `conditions`, leased ONE AT A TIME with a fresh lease each, up
    to a batch; how many were handled. `concurrency` rows are handled at once, each by a loop
    that leases its next row only when it is done with the last.

    Leasing a whole batch up front would let the leases of its last rows run out while the
    first ones wait on pay_api — and then another worker could take the same row (say, expire a
    payment this one is registering)."""

    async def one(resources: Resources, ids: list[uuid.UUID], now: datetime) -> None:
        await handle(resources, ids[0], now)

    return await _each_leased_together(
        resources, now, one, model, *conditions, order_by=order_by, concurrency=concurrency
    )


async def _each_leased_together(
    resources: Resources,
    now: datetime,
    handle: Callable[[Resources, list[uuid.UUID], datetime], Awaitable[None]],
    model: type,
    *conditions,
    order_by=None,
    concurrency: int = 1,
    together: int = 1,
    limit: int | None = None,
) -> int:
    """`_each_leased`, with up to `together` rows leased at once and handled by one call (for a
    handler that makes ONE pay_api call for all of them, so no lease waits on another's call);
    up to `limit` rows a pass (the worker's batch size by default)."""
    limit = limit or resources.settings.worker_batch_size
    seen: list[uuid.UUID] = []  # a row handled once this pass is not taken again
    # One loop leases at a time: two leasing at once split the rows due between them (each
    # statement skips what the other locked first), and a batch is fuller taken whole.
    leasing = asyncio.Lock()

    async def one_by_one() -> None:
        while len(seen) < limit:
            async with leasing, resources.sessionmaker() as session:
                ids = await claim_batch(
                    session,
                    model,
                    *conditions,
                    model.id.not_in(seen),
                    seconds=resources.settings.worker_claim_seconds,
                    limit=min(together, limit - len(seen)),
                    order_by=order_by,
                )
            if not ids:
                return
            seen.extend(ids)
            await handle(resources, ids, now)

    # A loop that fails does not cancel the others mid-call (their rows would wait for their
    # leases to run out); the first failure is raised once all are done.
    outcomes = await asyncio.gather(
        *(one_by_one() for _ in range(max(1, concurrency))), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return len(seen)


async def _ask(question: Awaitable[dict | None]) -> tuple[dict | None, bool]:
    """pay_api's answer (None: it does not know the object), and whether asking failed."""
    try:
        return await question, False
    except PayApiError:
        return None, True


async def register_created(resources: Resources, now: datetime) -> int:
    """(a) First payments written but not yet known to pay_api (it was down): register them.
    (A renewal is registered by its own charge, see charge_renewals.)"""
    due = (
        Payment.kind == "first",
        Payment.status == "created",
        Payment.next_check_at <= now,
        Payment.expires_at > now,
    )
    return await _each_leased(resources, now, _register_one, Payment, *due)


async def _register_one(resources: Resources, payment_id: uuid.UUID, now: datetime) -> None:
    await register(
        resources=resources, payment_id=payment_id, now=now, raise_errors=False, claimed=True
    )


async def expire_payments(resources: Resources, now: datetime) -> int:
    """(c) Payments past their deadline: cancel at pay_api (so they can never be charged later),
    then `expired` — or `succeeded` if Stripe charged first.

    A `processing` payment past its deadline is asked too (on the reconciler's back-off): pay_api
    cancels it if Stripe still can, else answers `processing`/`succeeded` while money moves, and
    then it stays open and keeps being reconciled — never `expired` with money on its way."""
    unpaid = or_(
        Payment.status.in_(("created", "pending")),
        and_(Payment.status == "processing", Payment.next_check_at <= now),
    )
    return await _each_leased(
        resources, now, _expire_one, Payment, unpaid, Payment.expires_at <= now
    )


async def _expire_one(resources: Resources, payment_id: uuid.UUID, now: datetime) -> None:
    settings = resources.settings
    report: PaymentReport | None = None
    lost = False
    asked_at = wall_now()  # compared with pay_api's occurred_at
    try:
        answer = await resources.pay_api.cancel_payment(str(payment_id))
        # None: pay_api never had it, so nobody can pay it: expire it here.
        report = (
            PaymentReport.from_answer(answer, asked_at=asked_at)
            if answer is not None
            else PaymentReport(status="canceled")
        )
    except PayApiUnavailable as exc:
        lost = exc.maybe_applied  # else it never reached pay_api: try again next pass
    except PayApiRejected as exc:
        logger.error(
            "pay_api refused a cancel", extra={"payment_id": str(payment_id), "code": exc.code}
        )
        lost = True
    async with _leased_payment(resources, payment_id) as (session, payment):
        if lost:
            # The cancel may or may not have happened: only the reconciler may decide now.
            if payment.status in ("created", "pending") and state.move(payment, "unknown", now=now):
                schedule_check(payment, now=now, settings=settings, retry=False)
        elif report is not None:
            await apply_payment_report(
                session, payment=payment, report=report, now=now, settings=settings
            )
        if payment.status == "processing":
            # Money is moving (or we could not tell): keep it open, ask again on the back-off.
            schedule_check(payment, now=now, settings=settings, retry=True)


async def reconcile_payments(resources: Resources, now: datetime) -> int:
    """(b) Ask pay_api (which asks Stripe) about payments that are not final, on a back-off."""
    due = (Payment.status.in_(("pending", "processing", "unknown")), Payment.next_check_at <= now)
    return await _each_leased(resources, now, _reconcile_payment, Payment, *due)


async def _reconcile_payment(resources: Resources, payment_id: uuid.UUID, now: datetime) -> None:
    settings = resources.settings
    asked_at = wall_now()  # compared with pay_api's occurred_at
    answer, failed = await _ask(resources.pay_api.get_payment(str(payment_id)))
    async with _leased_payment(resources, payment_id) as (session, payment):
        moved = False
        if answer is not None or (not failed and payment.status == "unknown"):
            # No answer from a pay_api that works: it never had the payment, nothing was charged.
            report = (
                PaymentReport.from_answer(answer, asked_at=asked_at)
                if answer is not None
                else PaymentReport(status="canceled")
            )
            moved = await apply_payment_report(
                session,
                payment=payment,
                report=report,
                now=now,
                settings=settings,
                by_reconciler=True,
            )
        elif not failed:
            logger.error(
                "pay_api does not know an open payment", extra={"payment_id": str(payment_id)}
            )
        if payment.status in OPEN_PAYMENT_STATUSES and not moved:
            schedule_check(payment, now=now, settings=settings, retry=True)


@asynccontextmanager
async def _leased_payment(
    resources: Resources, payment_id: uuid.UUID
) -> AsyncIterator[tuple[AsyncSession, Payment]]:
    """The worker's leased payment, row-locked and its lease released; committed on the way out."""
    async with resources.sessionmaker() as session:
        payment = await lock_payment(session, payment_id)
        payment.claimed_until = None
        yield session, payment
        await commit(session, resources.access_cache)


async def submit_refunds(resources: Resources, now: datetime) -> int:
    """(a') Refunds pay_api has not acknowledged yet: send them (idempotent by refund id)."""
    due = (Refund.status == "pending", Refund.submitted_at.is_(None), Refund.next_check_at <= now)
    return await _each_leased(resources, now, _submit_one, Refund, *due)


async def _submit_one(resources: Resources, refund_id: uuid.UUID, now: datetime) -> None:
    await submit(resources=resources, refund_id=refund_id, now=now, claimed=True)


async def reconcile_refunds(resources: Resources, now: datetime) -> int:
    """(b') Ask pay_api about pending refunds it has, on a back-off."""
    due = (
        Refund.status == "pending",
        Refund.submitted_at.is_not(None),
        Refund.next_check_at <= now,
    )
    return await _each_leased(resources, now, _reconcile_refund, Refund, *due)


async def _reconcile_refund(resources: Resources, refund_id: uuid.UUID, now: datetime) -> None:
    settings = resources.settings
    answer, failed = await _ask(resources.pay_api.get_refund(str(refund_id)))
    async with resources.sessionmaker() as session:
        refund = await session.get(Refund, refund_id)
        payment = await lock_payment(session, refund.payment_id)
        refund = await lock_refund(session, refund_id)
        refund.claimed_until = None
        if answer is not None:
            await apply_refund_status(
                session,
                payment=payment,
                refund=refund,
                status=str(answer.get("status")),
                now=now,
                settings=settings,
                stripe_refund_id=answer.get("stripe_refund_id"),
                failure_code=answer.get("failure_code"),
            )
        elif not failed:
            refund.submitted_at = None  # pay_api lost it: send it again
        if refund.status == "pending":
            schedule_refund_check(refund, now=now, settings=settings)
        await commit(session, resources.access_cache)


async def expire_subscriptions(resources: Resources, now: datetime) -> int:
    """(d) Paid periods that ended: `expired`, and the users' cached decisions dropped."""
    async with resources.sessionmaker() as session:
        expired = await expire_ended(
            session, now=now, limit=resources.settings.worker_batch_size, skip_locked=True
        )
        await commit(session, resources.access_cache)
    return expired


async def write_renewals(resources: Resources, now: datetime) -> int:
    """(r1) Subscriptions whose period ends within the lead time: their renewal payment."""
    return await renewals.write_due(resources, now)


async def charge_renewals(resources: Resources, now: datetime) -> int:
    """(r2) Renewal payments due (first attempt or a retry): charged off-session via pay_api in
    batches (BILLING_RENEWAL_BATCH_SIZE renewals leased together and sent in one call),
    BILLING_RENEWAL_CONCURRENCY batches at once, oldest due first
    (`ix_payments_renewal_next_charge`)."""
    settings = resources.settings
    size = renewals.batch_size(settings)
    return await _each_leased_together(
        resources,
        now,
        renewals.charge_batch,
        Payment,
        *renewals.due_for_charge(now),
        order_by=Payment.next_charge_at,
        concurrency=settings.renewal_concurrency,
        together=size,
        limit=renewals.pass_size(settings),
    )


async def renewal_period_ends(resources: Resources, now: datetime) -> int:
    """(r3) Periods that ended unrenewed → grace; graces that ran out → suspended/expired."""
    return await renewals.move_at_period_end(resources, now)


async def deliver_outbox(resources: Resources, now: datetime) -> int:
    """(e) Outbox: the access notifications once more, durably (see billing.outbox)."""
    async with resources.sessionmaker() as session:
        messages = list(
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.topic != TOPIC_EMAIL)
                .order_by(OutboxMessage.id)
                .limit(resources.settings.worker_batch_size * 10)
                .with_for_update(skip_locked=True)
            )
        )
        if not messages:
            return 0
        users = {
            uuid.UUID(m.payload["user_id"]) for m in messages if "user_id" in (m.payload or {})
        }
        everything = any(m.topic == TOPIC_CATALOG_CHANGED for m in messages)
        # Sent again with the delivery's commit: a second drop is harmless (see billing.outbox).
        await notify_access_changes(session, users=users, catalog=everything)
        await _mark_delivered(session, [m.id for m in messages], now)
        await session.commit()
    return len(messages)


async def _mark_delivered(session: AsyncSession, ids: list[int], now: datetime) -> None:
    """Outbox rows delivered: one statement for all of them (not an UPDATE per row at flush)."""
    if ids:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))))
            .values(delivered_at=now, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False)
        )


async def prune_old_rows(resources: Resources, now: datetime) -> int:
    """(f) Rows that only guard against repeats, past their keeping time (see billing.pruning).

    By the wall clock, not billing's: the rows are stamped by the database's clock, and a test
    stack's clock moved forward must not make a key seconds old look days old."""
    async with resources.sessionmaker() as session:
        return await prune(
            session,
            settings=resources.settings,
            now=wall_now(),
            limit=resources.settings.worker_batch_size * 10,
        )


async def send_emails(resources: Resources, now: datetime) -> int:
    """(f) Outbox: emails, in the order they were written, over one SMTP connection. Rows stay
    locked while they are sent, so two workers never send the same one; a crash between the send
    and the commit sends it again (at least once, never lost)."""
    async with resources.sessionmaker() as session:
        messages = list(
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.topic == TOPIC_EMAIL)
                .order_by(OutboxMessage.id)
                # As many as a pass writes receipts (one per renewal charged), so mail keeps up.
                .limit(renewals.pass_size(resources.settings))
                .with_for_update(skip_locked=True)
            )
        )
        if not messages:
            return 0
        try:
            sent = await asyncio.to_thread(
                smtp.send_all, resources.settings, [m.payload for m in messages]
            )
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning("emails not sent; the next pass tries again", extra={"error": repr(exc)})
            sent = 0
        await _mark_delivered(session, [m.id for m in messages[:sent]], now)
        for message in messages[sent:]:
            message.attempts += 1
        await session.commit()
    return sent


JOBS = (
    ("write_renewals", write_renewals),
    ("charge_renewals", charge_renewals),
    ("register_created", register_created),
    ("expire_payments", expire_payments),
    ("reconcile_payments", reconcile_payments),
    ("submit_refunds", submit_refunds),
    ("reconcile_refunds", reconcile_refunds),
    ("expire_subscriptions", expire_subscriptions),
    ("renewal_period_ends", renewal_period_ends),
    ("deliver_outbox", deliver_outbox),
    ("prune_old_rows", prune_old_rows),
    ("send_emails", send_emails),
)


async def run_once(resources: Resources, *, now: datetime | None = None) -> dict[str, int]:
    """One pass of every job; a job that fails is logged and does not stop the others."""
    if now is None:
        if resources.settings.movable_clock:
            await CLOCK.sync(resources.redis, resources.settings.redis_prefix)
        now = utcnow()
    done: dict[str, int] = {}
    for name, job in JOBS:
        try:
            done[name] = await job(resources, now)
        except Exception:
            logger.exception("worker job failed", extra={"job": name})
            done[name] = -1
    if resources.settings.movable_clock:
        await note_worker_pass(
            resources.redis, resources.settings.redis_prefix, worker=WORKER_NAME, began=now
        )
    return done
