"""Transactional outbox: notifications to billing, written in the transaction that changed state.

`add_*_event` inserts a row in the caller's transaction; after the commit the rows are offered to
`OutboxDispatcher` for an immediate, best-effort delivery, and `python -m pay_api.worker` delivers
whatever is left with back-off. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so any number of
workers and web processes can deliver at once; billing applies each `event_id` once.
"""

from __future__ import annotations

import logging
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, Uuid, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from pay_api.auth import mint_service_token
from pay_api.config import Settings
from pay_api.db import OUTBOX_IDS_KEY, OUTBOX_SUBJECTS_KEY, Base, Database, utcnow
from pay_api.logs import REQUEST_ID_HEADER, current_request_id

log = logging.getLogger(__name__)

EVENTS_PATH = "/internal/v1/payment-events"


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "next_attempt_at", postgresql_where=text("delivered_at IS NULL")),
        Index(  # pruning by age
            "ix_outbox_delivered_at",
            "delivered_at",
            postgresql_where=text("delivered_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _add(
    session: Session,
    payload: dict[str, Any],
    request_id: str | None = None,
    *,
    subjects: tuple[Any, ...] = (),
) -> OutboxMessage:
    """`request_id`: sent back to billing with the event (else the request being served);
    `subjects`: the ids the event is about (a crash point after the commit may name one)."""
    message = OutboxMessage(
        event_id=uuid.UUID(payload["event_id"]),
        payload=payload,
        request_id=request_id or current_request_id(),
    )
    session.add(message)
    session.flush()
    session.info.setdefault(OUTBOX_IDS_KEY, []).append(message.id)
    session.info.setdefault(OUTBOX_SUBJECTS_KEY, set()).update(str(s) for s in subjects)
    return message


def add_payment_event(session: Session, payment: Any) -> OutboxMessage:
    """Tell billing the payment's current state (status, refunded amount, failure)."""
    return _add(
        session,
        {
            "event_id": str(uuid.uuid4()),
            "object": "payment",
            "payment_id": str(payment.id),
            "refund_id": None,
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "amount_refunded": payment.amount_refunded,
            "refunded_outside": payment.refunded_outside,
            "failure_code": payment.failure_code,
            "failure_message": payment.failure_message,
            "stripe_id": payment.stripe_payment_intent_id,
            "occurred_at": utcnow().isoformat(),
        },
        request_id=payment.request_id,  # the purchase's: one id from billing's POST to here
        subjects=(payment.id, payment.user_id),
    )


def add_refund_event(session: Session, refund: Any, payment: Any) -> OutboxMessage:
    """Tell billing a refund's current state; `amount_refunded` is the payment's total."""
    return _add(
        session,
        {
            "event_id": str(uuid.uuid4()),
            "object": "refund",
            "payment_id": str(payment.id),
            "refund_id": str(refund.id),
            "status": refund.status,
            "amount": refund.amount,
            "currency": refund.currency,
            "amount_refunded": payment.amount_refunded,
            "refunded_outside": payment.refunded_outside,
            "failure_code": refund.failure_reason if refund.status == "failed" else None,
            "failure_message": None,
            "stripe_id": refund.stripe_refund_id,
            "occurred_at": utcnow().isoformat(),
        },
        subjects=(refund.id, payment.id, payment.user_id),
    )


def backoff_seconds(attempts: int, *, maximum: float) -> float:
    """2, 4, 8 ... seconds up to `maximum`, with a little jitter so workers spread out."""
    base = min(maximum, 2.0 ** min(attempts, 20))
    return base * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not security


class BillingSender:
    """POSTs one notification to billing; True when billing answered 2xx."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.billing_url.rstrip("/") + EVENTS_PATH
        self.client = httpx.Client(timeout=settings.outbox_timeout_seconds)

    def send(self, message: OutboxMessage) -> tuple[bool, str | None]:
        token = mint_service_token(audience="billing", secret=self.settings.service_jwt_secret)
        headers = {
            "Authorization": f"Bearer {token}",
            REQUEST_ID_HEADER: message.request_id or message.payload["event_id"],
        }
        try:
            response = self.client.post(self.url, json=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return True, None
        return False, f"HTTP {response.status_code}: {response.text[:300]}"

    def close(self) -> None:
        self.client.close()


def deliver_due(
    db: Database, sender: BillingSender, *, ids: list[int] | None = None, batch: int = 20
) -> int:
    """Deliver up to `batch` due notifications (only `ids` if given); how many were tried."""
    with db.transaction() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(ids))
        else:
            query = query.where(OutboxMessage.next_attempt_at <= utcnow())
        messages = session.scalars(query).all()
        for message in messages:
            delivered, error = sender.send(message)
            message.attempts += 1
            if delivered:
                message.delivered_at = utcnow()
                message.last_error = None
                log.info(
                    "event delivered to billing",
                    extra={"event_id": str(message.event_id), "attempts": message.attempts},
                )
            else:
                delay = backoff_seconds(
                    message.attempts, maximum=sender.settings.outbox_backoff_max_seconds
                )
                message.next_attempt_at = utcnow() + timedelta(seconds=delay)
                message.last_error = error
                log.warning(
                    "event not delivered to billing; will retry",
                    extra={
                        "event_id": str(message.event_id),
                        "attempts": message.attempts,
                        "retry_in_seconds": round(delay, 1),
                        "error": error,
                    },
                )
        return len(messages)


class OutboxDispatcher:
    """Best-effort delivery right after a commit, in a background thread of the web process."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.sender = BillingSender(settings)
        self.enabled = settings.outbox_deliver_immediately
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="outbox")

    def after_commit(self, ids: list[int]) -> None:
        if self.enabled and ids:
            self._pool.submit(self._deliver, list(ids))

    def _deliver(self, ids: list[int]) -> None:
        try:
            deliver_due(self.db, self.sender, ids=ids)
        except Exception:  # the worker will deliver it; never let this thread die noisily
            log.exception("immediate outbox delivery failed")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.sender.close()
