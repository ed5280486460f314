"""Renewal charges in batches: billing's worker sends the renewals it has leased in ONE call
(`POST /internal/v1/renewals/charges`), and pay_api charges each exactly as `charge_off_session`
charges one — the same two steps on the payment's ONE PaymentIntent, the same idempotency keys,
the same crash points — with one transaction per step for the whole batch and the Stripe
requests of a step sent side by side.

Per renewal a batch saves two HTTP requests between our services and about six transactions
(bench/README.md, "Renewal throughput"). Step by step, for the batch's payments:

0. registration (idempotent by payment id, as `POST /payments`) and the users' saved cards, in
   one transaction;
1. the intents that do not exist yet are created UNCONFIRMED at Stripe, under the rows' locks,
   and their ids committed, in one transaction;
2. the payments still confirmable are locked again; each whose `attempt` was not confirmed yet
   counts its confirmation, the confirmations go to Stripe side by side, and each answer is
   applied (with its outbox event), in one transaction.

A crash anywhere leaves what the single charge's crash would leave, for every payment of the
batch: step 1's intents unconfirmed, or step 2 rolled back with confirmations Stripe may have
taken — billing asks again with the same attempt numbers, pay_api sends the same idempotency keys,
and Stripe answers the charge it made. A payment whose last confirmation's answer was lost
(`unknown`) takes the single path, which asks Stripe first.

Each item answers on its own: the payment (as `charge-off-session` does) or an error (`409
no_saved_card`, `409 payment_conflict`, `503 gateway_unavailable` …); one item's failure never
fails the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, Uuid, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert

from pay_api import outbox
from pay_api.db import Database, utcnow
from pay_api.errors import (
    NoSavedCard,
    PayApiError,
    PaymentConflict,
    PaymentNotFound,
)
from pay_api.gateway import Gateway, IntentState
from pay_api.logs import current_request_id
from pay_api.payments import service
from pay_api.payments.models import FINAL_PAYMENT_STATUSES, Customer, Payment
from pay_api.payments.schemas import RenewalChargeIn

T = TypeVar("T")


Answer = Payment | PayApiError


class StripeCalls:
    """Stripe requests of one step sent side by side (threads: the SDK is synchronous and its
    HTTP client keeps one session per thread). Shared by the process's requests."""

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stripe")

    def map(
        self, call: Callable[[T], IntentState], items: list[T]
    ) -> list[IntentState | Exception]:
        """`call` for each item; each answer or the error it raised, in order."""

        def guarded(item: T) -> IntentState | Exception:
            try:
                return call(item)
            except Exception as exc:  # noqa: BLE001 - handed back to the caller, item by item
                return exc

        if len(items) == 1:
            return [guarded(items[0])]
        return list(self._pool.map(guarded, items))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def _any_uuid(ids) -> ColumnElement:
    """`= ANY(:ids)`, the ids as ONE array parameter: one statement text whatever the batch's
    size, so psycopg converts it once and PostgreSQL prepares it once (an `IN` list of 50 is a new
    text per size, beyond psycopg's cache of converted queries)."""
    return any_(bindparam("ids", list(ids), type_=ARRAY(Uuid)))


def charge_renewals(
    *, db: Database, gateway: Gateway, calls: StripeCalls, charges: list[RenewalChargeIn]
) -> list[Answer]:
    """Charge each renewal of the batch off-session as its `attempt`; an answer per item, in
    order (see the module docstring)."""
    answers: dict[uuid.UUID, Answer] = {}
    cards = _register(db, charges, answers)
    todo = [c for c in charges if c.payment_id not in answers]
    slow = _create_intents(db, gateway, calls, todo, cards, answers)
    _confirm_all(
        db, gateway, calls, [c for c in todo if c.payment_id not in answers], cards, answers
    )
    for charge in slow:  # an `unknown` one: the single path asks Stripe before anything else
        try:
            answers[charge.payment_id] = service.charge_off_session(
                db=db, gateway=gateway, payment_id=charge.payment_id, attempt=charge.attempt
            )
        except PayApiError as exc:
            answers[charge.payment_id] = exc
    return [answers[c.payment_id] for c in charges]


def _register(
    db: Database, charges: list[RenewalChargeIn], answers: dict[uuid.UUID, Answer]
) -> dict[uuid.UUID, tuple[str, str]]:
    """Step 0: the payments registered (new ones inserted, known ones checked against the item)
    and each user's saved card; answers what is already over. Returns {user: (customer, card)}."""
    with db.transaction() as session:
        # Parameters as a list: one statement compiled once and cached, sent as one INSERT.
        session.execute(
            insert(Payment).on_conflict_do_nothing(index_elements=[Payment.id]),
            [
                dict(
                    id=c.payment_id,
                    user_id=c.user_id,
                    amount=c.amount,
                    currency=c.currency,
                    description=c.description,
                    return_url=c.return_url,
                    gross_amount=c.gross_amount,
                    discount_amount=c.discount_amount,
                    promo_code=c.promo_code,
                    status="pending",
                    confirm_attempts=0,
                    amount_refunded=0,
                    request_id=current_request_id(),
                )
                for c in charges
            ],
        )
        # Rows, not objects (the ORM's loading cost more than the query): the few payments
        # already over are loaded whole below, as their answer.
        payments = {
            p.id: p
            for p in session.execute(
                select(
                    Payment.id, Payment.amount, Payment.currency, Payment.user_id, Payment.status
                ).where(Payment.id == _any_uuid([c.payment_id for c in charges]))
            )
        }
        customers = {
            c.user_id: c
            for c in session.execute(
                select(
                    Customer.user_id,
                    Customer.stripe_customer_id,
                    Customer.default_payment_method_id,
                ).where(Customer.user_id == _any_uuid({c.user_id for c in charges}))
            )
        }
        over = _over(session, payments)
    cards: dict[uuid.UUID, tuple[str, str]] = {}
    for charge in charges:
        payment = payments[charge.payment_id]
        customer = customers.get(charge.user_id)
        if (
            payment.amount != charge.amount
            or payment.currency != charge.currency
            or payment.user_id != charge.user_id
        ):
            answers[charge.payment_id] = PaymentConflict()
        elif payment.id in over:
            answers[charge.payment_id] = over[payment.id]
        elif customer is None or not (
            customer.stripe_customer_id and customer.default_payment_method_id
        ):
            answers[charge.payment_id] = NoSavedCard()
        else:
            cards[charge.user_id] = (
                customer.stripe_customer_id,
                customer.default_payment_method_id,
            )
    return cards


def _over(session, rows: dict[uuid.UUID, Any]) -> dict[uuid.UUID, Payment]:
    """Of the payments read as `rows`, those already over, loaded whole (their answer) and
    detached from `session`."""
    ids = [i for i, row in rows.items() if row.status in FINAL_PAYMENT_STATUSES]
    if not ids:
        return {}
    payments = {
        p.id: p for p in session.scalars(select(Payment).where(Payment.id == _any_uuid(ids)))
    }
    session.expunge_all()
    return payments


def _locked(session, charges: list[RenewalChargeIn]) -> dict[uuid.UUID, Payment]:
    """The batch's payments, row-locked in id order (so two batches never wait on each other in
    a circle)."""
    return {
        p.id: p
        for p in session.scalars(
            select(Payment)
            .where(Payment.id == _any_uuid([c.payment_id for c in charges]))
            .order_by(Payment.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def _create_intents(
    db: Database,
    gateway: Gateway,
    calls: StripeCalls,
    charges: list[RenewalChargeIn],
    cards: dict[uuid.UUID, tuple[str, str]],
    answers: dict[uuid.UUID, Answer],
) -> list[RenewalChargeIn]:
    """Step 1: intents for the payments that have none, created and committed under the rows'
    locks (`service._ensure_intent`, for a batch). Returns the `unknown` payments' charges (left
    to the single path)."""
    if not charges:
        return []
    slow: list[RenewalChargeIn] = []
    with db.transaction() as session:
        # Rows locked, not objects: nothing here changes a payment through the ORM.
        payments = {
            p.id: p
            for p in session.execute(
                select(Payment.id, Payment.status, Payment.stripe_payment_intent_id)
                .where(Payment.id == _any_uuid([c.payment_id for c in charges]))
                .order_by(Payment.id)
                .with_for_update()
            )
        }
        over = _over(session, payments)
        to_create: list[RenewalChargeIn] = []
        for charge in charges:
            payment = payments.get(charge.payment_id)
            if payment is None:
                answers[charge.payment_id] = PaymentNotFound()
            elif payment.id in over:
                answers[charge.payment_id] = over[payment.id]
            elif payment.status == "unknown":
                slow.append(charge)
            elif payment.stripe_payment_intent_id is None:
                to_create.append(charge)

        def create(charge: RenewalChargeIn) -> IntentState:
            customer_id, payment_method_id = cards[charge.user_id]
            return gateway.create_payment_intent(
                payment_id=str(charge.payment_id),
                customer_id=customer_id,
                payment_method_id=payment_method_id,
                amount=charge.amount,
                currency=charge.currency,
                description=charge.description,
            )

        created: list[tuple[uuid.UUID, IntentState]] = []
        for charge, intent in zip(to_create, calls.map(create, to_create), strict=True):
            if isinstance(intent, PayApiError):
                answers[charge.payment_id] = intent
            elif isinstance(intent, Exception):
                raise intent
            else:
                created.append((charge.payment_id, intent))
        _store_intents(session, created)
    for charge in slow:
        answers.pop(charge.payment_id, None)
    return slow


def _store_intents(session, created: list[tuple[uuid.UUID, IntentState]]) -> None:
    """Each payment's new intent (id and status) written in ONE statement from arrays: the ORM's
    flush sent an UPDATE per payment, each a new row version in every index of the table
    (bench/README.md). The step holds the payments as rows, not objects: nothing goes stale."""
    if not created:
        return
    session.execute(
        text(
            "UPDATE payments SET stripe_payment_intent_id = v.intent_id,"
            " stripe_status = v.stripe_status, updated_at = :now"
            " FROM unnest(:ids, :intent_ids, :statuses) AS v(id, intent_id, stripe_status)"
            " WHERE payments.id = v.id"
        ).bindparams(
            bindparam("ids", type_=ARRAY(Uuid)),
            bindparam("intent_ids", type_=ARRAY(String)),
            bindparam("statuses", type_=ARRAY(String)),
        ),
        {
            "now": utcnow(),
            "ids": [payment_id for payment_id, _ in created],
            "intent_ids": [intent.id for _, intent in created],
            "statuses": [intent.status for _, intent in created],
        },
    )


def _confirm_all(
    db: Database,
    gateway: Gateway,
    calls: StripeCalls,
    charges: list[RenewalChargeIn],
    cards: dict[uuid.UUID, tuple[str, str]],
    answers: dict[uuid.UUID, Answer],
) -> None:
    """Step 2: each payment still confirmable and whose attempt is new is confirmed once, the
    confirmations sent side by side, every answer applied in the same transaction
    (`service.charge_off_session` and `service._confirm`, for a batch)."""
    if not charges:
        return
    with db.transaction() as session:
        payments = _locked(session, charges)
        # The users' Customers, held in this session: applying each answer checks the intent's
        # customer (verification.py) from here, not with a query (and a flush) per payment.
        customers = list(
            session.scalars(
                select(Customer).where(Customer.user_id == _any_uuid({c.user_id for c in charges}))
            )
        )
        to_confirm: list[tuple[Payment, str, str]] = []  # (payment, card, idempotency key)
        for charge in charges:
            payment = payments[charge.payment_id]
            answers[charge.payment_id] = payment
            if (
                charge.attempt <= payment.off_session_attempt
                or service._not_confirmable(payment) is not None
                or payment.stripe_status == "requires_action"  # the user is authenticating it
            ):
                continue
            _, payment_method_id = cards[charge.user_id]
            payment.off_session_attempt = charge.attempt
            key = service.count_confirmation(payment, payment_method_id)
            to_confirm.append((payment, payment_method_id, key))

        def confirm(item: tuple[Payment, str, str]) -> IntentState:
            payment, payment_method_id, key = item
            return gateway.confirm_payment_intent(
                payment.stripe_payment_intent_id,
                payment_method_id=payment_method_id,
                idempotency_key=key,
                off_session=True,
            )

        for (payment, _, _), outcome in zip(
            to_confirm, calls.map(confirm, to_confirm), strict=True
        ):
            service.apply_confirmation(session, gateway, payment, outcome, off_session=True)
        # Billing applies these answers itself: their events are the safety net for an answer
        # it lost, delivered later, when billing has them already (and drops them cheaply).
        outbox.defer_events(session, gateway.settings.outbox_answered_delay_seconds)
        del customers
