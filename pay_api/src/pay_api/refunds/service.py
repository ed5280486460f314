"""Refunds: recorded (and capped) before Stripe is asked, then made exactly once at Stripe.

localstripe ignores Idempotency-Key and does not cap refunds, so pay_api does both itself: the
cap is checked under the payment's row lock against stored pending + succeeded refunds, and before
(re)creating a refund at Stripe pay_api looks for one carrying our `metadata.refund_id`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pay_api import failpoints, outbox, verification
from pay_api.db import Database, utcnow
from pay_api.errors import (
    GatewayRejected,
    PaymentNotRefundable,
    RefundConflict,
    RefundExceedsRemaining,
    RefundNotFound,
)
from pay_api.failpoints import failpoint
from pay_api.gateway import Gateway, RefundState
from pay_api.payments.models import Payment
from pay_api.payments.service import get_payment
from pay_api.refunds import totals
from pay_api.refunds.models import FINAL_REFUND_STATUSES, OPEN_OR_DONE_REFUND_STATUSES, Refund

log = logging.getLogger(__name__)

# Stripe's answers meaning "the charge has less left than this refund".
_EXCEEDS_CODES = frozenset({"amount_too_large", "charge_already_refunded"})
_STRIPE_TO_OURS = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}


def committed_refunds(session: Session, payment: Payment) -> int:
    """Money already returned or on its way back for this payment: our open (pending) refunds
    plus what is refunded — Stripe's total (it includes our succeeded refunds and any made
    outside pay_api) when we know it, else our own succeeded refunds."""
    sums = dict(
        session.execute(
            select(Refund.status, func.coalesce(func.sum(Refund.amount), 0))
            .where(Refund.payment_id == payment.id, Refund.status.in_(OPEN_OR_DONE_REFUND_STATUSES))
            .group_by(Refund.status)
        ).all()
    )
    pending, succeeded = int(sums.get("pending", 0)), int(sums.get("succeeded", 0))
    return pending + max(payment.amount_refunded, succeeded + payment.refunded_outside)


def create_refund(
    *,
    db: Database,
    gateway: Gateway,
    refund_id: uuid.UUID,
    payment_id: uuid.UUID,
    amount: int,
    reason: str | None,
) -> Refund:
    """Record the refund (idempotent by refund id, capped), then make it at Stripe."""
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        existing = session.get(Refund, refund_id)
        if existing is not None:
            if existing.payment_id != payment_id or existing.amount != amount:
                raise RefundConflict()
        else:
            if payment.status != "succeeded" or payment.stripe_payment_intent_id is None:
                raise PaymentNotRefundable()
            remaining = payment.amount - committed_refunds(session, payment)
            if amount > remaining:
                raise RefundExceedsRemaining(
                    details={"remaining": remaining, "currency": payment.currency}
                )
            session.add(
                Refund(
                    id=refund_id,
                    payment_id=payment_id,
                    amount=amount,
                    currency=payment.currency,
                    reason=reason,
                    status="pending",
                )
            )
    return make_at_stripe(db=db, gateway=gateway, refund_id=refund_id)


# A create is sent within this long of being marked started, or not at all (see make_at_stripe).
SEND_WITHIN_SECONDS = 5.0


def make_at_stripe(*, db: Database, gateway: Gateway, refund_id: uuid.UUID) -> Refund:
    """Ensure the recorded refund exists at Stripe (found by metadata, else created once).

    Like the charge, in two steps: the start of a create is committed before Stripe is asked.
    A create whose process died may still be on its way to Stripe (a slow network, a proxy
    holding the bytes); Stripe's Idempotency-Key would make a second create harmless, but
    localstripe ignores it. So within `in_flight_seconds` of a started create nobody creates
    again: they look the refund up and, not finding it, leave it pending for the reconciler."""
    exceeded = False
    with db.transaction() as session:
        refund = _get(session, refund_id, lock=True)
        if refund.stripe_refund_id is not None or refund.is_final:
            return refund
        payment = get_payment(session=session, payment_id=refund.payment_id, lock=True)
        assert payment.stripe_payment_intent_id is not None
        found = gateway.find_refund(
            payment_intent_id=payment.stripe_payment_intent_id, refund_id=str(refund.id)
        )
        if found is not None:
            log.info(
                "refund found at stripe, not created again", extra={"refund_id": str(refund.id)}
            )
            apply_refund(session, refund, found, payment=payment)
            return refund
        now = utcnow()
        started = refund.stripe_create_started_at
        if started is not None and now < started + timedelta(seconds=gateway.in_flight_seconds):
            log.warning(
                "an earlier create of this refund may still reach stripe; not creating again yet",
                extra={"refund_id": str(refund.id), "started_at": started.isoformat()},
            )
            return refund
        refund.stripe_create_started_at = started = now
    with db.transaction() as session:
        refund = _get(session, refund_id, lock=True)
        if (
            refund.stripe_refund_id is not None
            or refund.is_final
            or refund.stripe_create_started_at != started
        ):
            return refund  # someone else moved it meanwhile
        if utcnow() > started + timedelta(seconds=SEND_WITHIN_SECONDS):
            # We waited long for the locks: the in-flight window counts from `started`, so a
            # request sent this late could outlive it. Leave it; a later call starts afresh.
            return refund
        payment = get_payment(session=session, payment_id=refund.payment_id, lock=True)
        failpoint(failpoints.BEFORE_REFUND, refund.id, payment.id, payment.user_id)
        try:
            created = gateway.create_refund(
                refund_id=str(refund.id),
                payment_intent_id=payment.stripe_payment_intent_id,
                amount=refund.amount,
                reason=refund.reason,
            )
        except GatewayRejected as exc:
            # Stripe said no for good: the refund failed (and billing is told).
            if _move(refund, "failed", failure_reason=exc.stripe_code or "gateway_rejected"):
                _changed(session, refund, payment)
            exceeded = exc.stripe_code in _EXCEEDS_CODES
            log.warning(
                "stripe refused the refund",
                extra={"refund_id": str(refund.id), "stripe_code": exc.stripe_code},
            )
        else:
            failpoint(failpoints.AFTER_REFUND, refund.id, payment.id, payment.user_id)
            apply_refund(session, refund, created, payment=payment)
    if exceeded:
        raise RefundExceedsRemaining("Stripe's charge has less left than this refund.")
    return refund


def refresh_refund(*, db: Database, gateway: Gateway, refund_id: uuid.UUID) -> Refund:
    """Stripe's current state of the refund, applied (finishing it at Stripe if needed)."""
    refund = find_refund(db=db, refund_id=refund_id)
    if refund.stripe_refund_id is None:
        return make_at_stripe(db=db, gateway=gateway, refund_id=refund_id)
    state = gateway.retrieve_refund(refund.stripe_refund_id)
    with db.transaction() as session:
        refund = _get(session, refund_id, lock=True)
        apply_refund(session, refund, state)
        return refund


def find_refund(*, db: Database, refund_id: uuid.UUID) -> Refund:
    with db.transaction() as session:
        return _get(session, refund_id)


def apply_refund(
    session: Session,
    refund: Refund,
    state: RefundState,
    *,
    payment: Payment | None = None,
    source: str = "stripe",
) -> bool:
    """Monotonic: pending → succeeded | failed | canceled, and succeeded → failed | canceled (the
    bank returned the money to us after all: Stripe's `refund.failed`); nothing else changes.
    A Stripe refund that is not this one (intent, amount, currency, metadata) changes nothing
    and is flagged (verification.py)."""
    if payment is None:
        payment = get_payment(session=session, payment_id=refund.payment_id, lock=True)
    if not verification.refund_matches(session, payment, refund, state, source=source):
        return False
    changed = False
    if refund.stripe_refund_id is None:
        refund.stripe_refund_id = state.id
        changed = True
    new_status = _STRIPE_TO_OURS.get(state.status, "pending")
    changed = _move(refund, new_status, failure_reason=state.failure_reason) or changed
    if changed:
        _changed(session, refund, payment)
    return changed


def _move(refund: Refund, new_status: str, *, failure_reason: str | None) -> bool:
    """The one place a refund's status is written: only the moves `_may_move` allows."""
    if not _may_move(refund.status, new_status):
        return False
    if refund.status == "succeeded":
        log.warning(
            "a succeeded refund failed later",
            extra={"refund_id": str(refund.id), "status": new_status},
        )
    refund.status = new_status
    refund.failure_reason = failure_reason if new_status == "failed" else None
    return True


def _changed(session: Session, refund: Refund, payment: Payment) -> None:
    """After a refund changed: the payment's refunded total recounted, billing told (outbox)."""
    session.flush()
    totals.recount(session, payment)
    outbox.add_refund_event(session, refund, payment)


def _may_move(current: str, new: str) -> bool:
    if current == new:
        return False
    if current == "succeeded":
        return new in ("failed", "canceled")
    return current not in FINAL_REFUND_STATUSES


def apply_charge_refunded(session: Session, payment: Payment, amount_refunded: int) -> bool:
    """Stripe's total refunded on the charge (charge.refunded): see `totals`."""
    if not totals.apply_stripe_total(session, payment, amount_refunded):
        return False
    outbox.add_payment_event(session, payment)
    return True


def find_by_stripe(session: Session, state: RefundState) -> Refund | None:
    """Our refund for a Stripe refund: by its id, or by the metadata we set on it."""
    refund = session.scalar(
        select(Refund).where(Refund.stripe_refund_id == state.id).with_for_update()
    )
    if refund is None and state.refund_id:
        try:
            refund = session.get(Refund, uuid.UUID(state.refund_id), with_for_update=True)
        except ValueError:
            return None
    return refund


def _get(session: Session, refund_id: uuid.UUID, *, lock: bool = False) -> Refund:
    refund = session.get(Refund, refund_id, with_for_update=lock, populate_existing=lock)
    if refund is None:
        raise RefundNotFound()
    return refund
