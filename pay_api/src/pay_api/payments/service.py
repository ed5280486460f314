"""Payments: creation for billing, the customer's card, and the charge (the money path).

The charge is two transactions, each holding the payment's row lock:

1. if the payment has no PaymentIntent yet: create it UNCONFIRMED at Stripe and COMMIT its id;
2. confirm it (a retry after a decline confirms the same intent with the new payment method) and
   apply Stripe's answer.

A crash can therefore only leave an unconfirmed intent (nothing charged, and never confirmed by
anyone but us) or a confirmed intent whose id is stored, which `sync`/`refresh`/webhooks settle.
The row lock makes a second, concurrent submit wait and then answer the state the first one left.

When Stripe's answer to the confirmation is lost (network error, timeout, 5xx after the SDK's
retries), Stripe may or may not have charged: the payment becomes `unknown` (attempt kept, billing
told through the outbox) and the page is told we are checking with the bank. Any news from Stripe
settles it; a later charge first asks Stripe, so a confirmation that charged is never sent again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from pay_api import failpoints
from pay_api.db import Database
from pay_api.errors import (
    CustomerNotFound,
    GatewayRejected,
    GatewayUnavailable,
    NoSavedCard,
    PaymentConflict,
    PaymentNotFound,
    PaymentNotPayable,
    SetupIntentInvalid,
)
from pay_api.failpoints import failpoint
from pay_api.gateway import Gateway, IntentState
from pay_api.logs import current_request_id
from pay_api.payments import card_setups, state
from pay_api.payments.models import Customer, Payment
from pay_api.payments.schemas import PriceShown

log = logging.getLogger(__name__)

# Friendlier words for the reasons a user sees most; Stripe's own message otherwise.
READABLE_FAILURES = {
    "card_declined": "Your card was declined. Try another card.",
    "generic_decline": "Your card was declined. Try another card.",
    "insufficient_funds": "Your card has insufficient funds. Try another card.",
    "lost_card": "Your card was declined. Try another card.",
    "stolen_card": "Your card was declined. Try another card.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again.",
    "payment_intent_authentication_failure": (
        "The 3-D Secure authentication failed. Try again or use another card."
    ),
}


# The page's words while a payment is `unknown` (the answer to its confirmation was lost).
CHECKING_WITH_THE_BANK = (
    "We are checking with your bank whether the payment went through. Do not pay again: "
    "you will not be charged twice, and your subscription starts as soon as the bank confirms."
)


def readable_failure(code: str | None, message: str | None) -> str | None:
    if code is None and message is None:
        return None
    return READABLE_FAILURES.get(code or "") or message or "The payment did not go through."


@dataclass(frozen=True)
class ChargeAnswer:
    """What the payment page gets back from /charge and /sync."""

    status: str  # succeeded | requires_action | declined | processing | pending
    client_secret: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    message: str | None = None  # what the page shows instead of its own words (processing)

    def to_body(self) -> dict:
        body: dict = {"status": self.status}
        if self.client_secret:
            body["client_secret"] = self.client_secret
        if self.message:
            body["message"] = self.message
        if self.error_code or self.error_message:
            body["error"] = {"code": self.error_code, "message": self.error_message}
        return body


# --- billing's side ----------------------------------------------------------------------------


def create_payment(
    *,
    db: Database,
    payment_id: uuid.UUID,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    description: str,
    return_url: str | None,
    price_shown: PriceShown | None = None,
) -> tuple[Payment, bool]:
    """Record a payment billing asked for; idempotent by payment id. Returns (payment, created).

    `price_shown`: the price before a discount and the discount, for the page (the charge is
    `amount`)."""
    price_shown = price_shown or PriceShown(gross_amount=amount)
    with db.transaction() as session:
        inserted = session.execute(
            insert(Payment)
            .values(
                id=payment_id,
                user_id=user_id,
                amount=amount,
                currency=currency,
                description=description,
                return_url=return_url,
                gross_amount=price_shown.gross_amount,
                discount_amount=price_shown.discount_amount,
                promo_code=price_shown.promo_code,
                status="pending",
                confirm_attempts=0,
                amount_refunded=0,
                request_id=current_request_id(),
            )
            .on_conflict_do_nothing(index_elements=[Payment.id])
            .returning(Payment.id)
        ).first()
        payment = session.get(Payment, payment_id)
        assert payment is not None
        if inserted is None and (
            payment.amount != amount or payment.currency != currency or payment.user_id != user_id
        ):
            raise PaymentConflict()
        return payment, inserted is not None


def get_payment(*, session: Session, payment_id: uuid.UUID, lock: bool = False) -> Payment:
    """The payment, optionally row-locked (FOR UPDATE) until the transaction ends."""
    payment = session.get(Payment, payment_id, with_for_update=lock, populate_existing=lock)
    if payment is None:
        raise PaymentNotFound()
    return payment


def find_payment(*, db: Database, payment_id: uuid.UUID) -> Payment:
    with db.transaction() as session:
        return get_payment(session=session, payment_id=payment_id)


def find_customer(*, db: Database, stripe_customer_id: str) -> Customer:
    """The user's Customer row for a Stripe Customer id (404 customer_not_found)."""
    with db.transaction() as session:
        customer = session.scalar(
            select(Customer).where(Customer.stripe_customer_id == stripe_customer_id)
        )
        if customer is None:
            raise CustomerNotFound()
        return customer


def refresh_payment(*, db: Database, gateway: Gateway, payment_id: uuid.UUID) -> Payment:
    """Ask Stripe for the intent's state and apply it (the reconciler's call)."""
    payment, _ = _refreshed(db=db, gateway=gateway, payment_id=payment_id)
    return payment


def _refreshed(
    *, db: Database, gateway: Gateway, payment_id: uuid.UUID
) -> tuple[Payment, IntentState | None]:
    """The payment after Stripe's current view of its intent was applied, and that view (None
    when there is no intent: Stripe knows nothing that we do not)."""
    payment = find_payment(db=db, payment_id=payment_id)
    if payment.stripe_payment_intent_id is None:
        return payment, None
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        return payment, _apply_stripe_now(session, gateway, payment, source="refresh")


def _apply_stripe_now(
    session: Session, gateway: Gateway, payment: Payment, *, source: str = "stripe"
) -> IntentState:
    """Stripe's view of the payment's intent, asked under the payment's row lock and applied.

    Asked under the lock (as the charge confirms under it), the snapshot cannot predate a
    confirmation applied meanwhile, which matters since processing may go back to pending."""
    assert payment.stripe_payment_intent_id is not None
    intent = gateway.retrieve_payment_intent(payment.stripe_payment_intent_id)
    state.apply_intent(session, payment, intent, current=True, source=source)
    return intent


def cancel_payment(*, db: Database, gateway: Gateway, payment_id: uuid.UUID) -> Payment:
    """Make sure the payment can never be charged; answers canceled, or succeeded if Stripe
    charged first."""
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        if payment.is_final:
            return payment
        if payment.stripe_payment_intent_id is None:
            # No intent exists, and the lock keeps a charge from creating one meanwhile.
            state.set_status(session, payment, "canceled")
            return payment
        intent = gateway.cancel_payment_intent(payment.stripe_payment_intent_id)
        state.apply_intent(session, payment, intent, current=True)
        return payment


# --- the user's side (payment page) ------------------------------------------------------------


def ensure_customer(*, db: Database, gateway: Gateway, user_id: uuid.UUID) -> str:
    """The user's Stripe Customer: created once (row-locked meanwhile), then reused."""
    with db.transaction() as session:
        session.execute(
            insert(Customer)
            .values(user_id=user_id)
            .on_conflict_do_nothing(index_elements=[Customer.user_id])
        )
        customer = session.get(Customer, user_id, with_for_update=True, populate_existing=True)
        assert customer is not None
        if customer.stripe_customer_id is None:
            customer.stripe_customer_id = gateway.create_customer(user_id=str(user_id))
        return customer.stripe_customer_id


def start_card_setup(*, db: Database, gateway: Gateway, payment_id: uuid.UUID) -> str:
    """A SetupIntent for the page to save the card with; returns its client secret."""
    payment = find_payment(db=db, payment_id=payment_id)
    if payment.is_final:
        raise PaymentNotPayable(_closed_message(payment))
    customer_id = ensure_customer(db=db, gateway=gateway, user_id=payment.user_id)
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        return card_setups.open_setup_intent(
            session,
            gateway,
            payment=payment,
            customer_id=customer_id,
            limit=gateway.settings.setup_intents_per_payment,
        )


def start_card_update(*, db: Database, gateway: Gateway, user_id: uuid.UUID) -> str:
    """A SetupIntent for the card-update page (no payment): its client secret."""
    customer_id = ensure_customer(db=db, gateway=gateway, user_id=user_id)
    _, client_secret = gateway.create_setup_intent(
        customer_id=customer_id, payment_id=f"card-update:{user_id}"
    )
    return client_secret


def update_card(
    *, db: Database, gateway: Gateway, user_id: uuid.UUID, setup_intent_id: str
) -> None:
    """The card the page saved becomes the user's card for the next renewals."""
    _save_card(db=db, gateway=gateway, user_id=user_id, setup_intent_id=setup_intent_id)


def charge(
    *, db: Database, gateway: Gateway, payment_id: uuid.UUID, setup_intent_id: str
) -> ChargeAnswer:
    """Charge the card saved by `setup_intent_id` (see the module docstring); that card becomes
    the user's card for renewals."""
    payment = find_payment(db=db, payment_id=payment_id)
    if payment.is_final:
        return _answer_closed(payment)
    with db.transaction() as session:  # ours for this payment, known without asking Stripe
        if not card_setups.made_for(
            session, payment_id=payment_id, setup_intent_id=setup_intent_id
        ):
            raise SetupIntentInvalid()
    customer_id, payment_method_id = _save_card(
        db=db, gateway=gateway, user_id=payment.user_id, setup_intent_id=setup_intent_id
    )
    answer = _ensure_intent(
        db=db,
        gateway=gateway,
        payment_id=payment_id,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
    )
    if answer is not None:
        return answer

    # Step 2: confirm, holding the row lock, and apply the answer in the same transaction.
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        answer = _not_confirmable(payment)
        if answer is not None:
            return answer
        if payment.payment_method_id == payment_method_id and payment.confirm_attempts > 0:
            # The same card again (double submit, or a retried request): no second confirmation,
            # answer what Stripe says now — unless Stripe never got that confirmation (its answer
            # was lost before it arrived), which leaves the intent waiting for one.
            intent = _apply_stripe_now(session, gateway, payment)
            if intent.status != "requires_confirmation":
                return _answer(payment, intent)
        return _confirm(session, gateway, payment, payment_method_id, off_session=False)


def charge_off_session(
    *, db: Database, gateway: Gateway, payment_id: uuid.UUID, attempt: int
) -> Payment:
    """A renewal: charge the user's saved card with the customer away, as billing's `attempt`.

    The same two steps as `charge`, on the payment's ONE PaymentIntent: every attempt and every
    link the user follows confirms that intent again, never a new one. An attempt is confirmed
    once (a repeated call answers the state), and never while the user is authenticating it."""
    payment = find_payment(db=db, payment_id=payment_id)
    if payment.is_final:
        return payment
    with db.transaction() as session:
        customer = session.get(Customer, payment.user_id)
        customer_id = customer.stripe_customer_id if customer else None
        payment_method_id = customer.default_payment_method_id if customer else None
    if customer_id is None or payment_method_id is None:
        raise NoSavedCard()
    _ensure_intent(
        db=db,
        gateway=gateway,
        payment_id=payment_id,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
    )
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        if (
            attempt <= payment.off_session_attempt
            or _not_confirmable(payment) is not None
            or payment.stripe_status == "requires_action"  # the user is authenticating it
        ):
            return payment
        payment.off_session_attempt = attempt
        _confirm(session, gateway, payment, payment_method_id, off_session=True)
        return payment


def authentication_details(
    *, db: Database, gateway: Gateway, payment_id: uuid.UUID
) -> tuple[str, str]:
    """(client secret, saved card) for the page that finishes a renewal with the user present:
    Stripe.js confirms the SAME intent with them (`confirmCardPayment`), then the page syncs."""
    payment = find_payment(db=db, payment_id=payment_id)
    if payment.is_final or payment.status != "pending":
        raise PaymentNotPayable(_closed_message(payment) if payment.is_final else None)
    if payment.stripe_payment_intent_id is None or payment.payment_method_id is None:
        raise PaymentNotPayable("This payment has nothing to authenticate.")
    intent = gateway.retrieve_payment_intent(payment.stripe_payment_intent_id)
    if intent.client_secret is None:
        raise PaymentNotPayable("This payment has nothing to authenticate.")
    return intent.client_secret, payment.payment_method_id


# --- the charge's steps ------------------------------------------------------------------------


def _save_card(
    *, db: Database, gateway: Gateway, user_id: uuid.UUID, setup_intent_id: str
) -> tuple[str, str]:
    """Step 0: the card the page saved (its SetupIntent, checked to be this user's and done)
    becomes the user's card for renewals. Returns (customer id, payment method id)."""
    with db.transaction() as session:
        customer = session.get(Customer, user_id)
        customer_id = customer.stripe_customer_id if customer else None
    try:
        setup = gateway.retrieve_setup_intent(setup_intent_id)
    except GatewayRejected as exc:  # gone at Stripe (e.g. a fresh localstripe)
        raise SetupIntentInvalid() from exc
    if (
        customer_id is None
        or setup.customer_id != customer_id
        or setup.status != "succeeded"
        or not setup.payment_method_id
    ):
        raise SetupIntentInvalid()
    with db.transaction() as session:
        customer = session.get(Customer, user_id, with_for_update=True)
        customer.default_payment_method_id = setup.payment_method_id
    return customer_id, setup.payment_method_id


def _ensure_intent(
    *,
    db: Database,
    gateway: Gateway,
    payment_id: uuid.UUID,
    customer_id: str,
    payment_method_id: str,
) -> ChargeAnswer | None:
    """Step 1: the intent exists and its id is committed before anything can confirm it.

    Answers when the payment turns out settled (an `unknown` one Stripe already decided)."""
    settled: IntentState | None = None
    with db.transaction() as session:
        payment = get_payment(session=session, payment_id=payment_id, lock=True)
        if payment.is_final:
            return _answer_closed(payment)
        if payment.status == "unknown":
            # The answer to an earlier confirmation was lost: learn what Stripe did before
            # anything else, so a confirmation that charged is never sent again (one that never
            # reached Stripe leaves the payment pending, and it is confirmed below).
            intent = _apply_stripe_now(session, gateway, payment)
            if payment.status != "pending":
                settled = intent
        elif payment.stripe_payment_intent_id is None:
            intent = gateway.create_payment_intent(
                payment_id=str(payment.id),
                customer_id=customer_id,
                payment_method_id=payment_method_id,
                amount=payment.amount,
                currency=payment.currency,
                description=payment.description,
            )
            payment.stripe_payment_intent_id = intent.id
            payment.stripe_status = intent.status
    if settled is not None:
        return _answer(payment, settled)  # after the commit: a closed payment answers an error
    return None


def _not_confirmable(payment: Payment) -> ChargeAnswer | None:
    """Step 2's guard (row lock held): an answer when no new confirmation may be sent."""
    if payment.is_final:
        return _answer_closed(payment)
    assert payment.stripe_payment_intent_id is not None
    if payment.status == "unknown":
        # Another submit's confirmation lost its answer since step 1: no new attempt.
        return ChargeAnswer("processing", message=CHECKING_WITH_THE_BANK)
    if payment.status == "processing":
        return ChargeAnswer("processing")  # money is moving: no new attempt
    return None


def _confirm(
    session: Session,
    gateway: Gateway,
    payment: Payment,
    payment_method_id: str,
    *,
    off_session: bool,
) -> ChargeAnswer:
    """Step 2's confirmation (row lock held) and Stripe's answer applied in the same transaction."""
    idempotency_key = count_confirmation(payment, payment_method_id)
    try:
        outcome: IntentState | GatewayRejected | GatewayUnavailable = (
            gateway.confirm_payment_intent(
                payment.stripe_payment_intent_id,
                payment_method_id=payment_method_id,
                idempotency_key=idempotency_key,
                off_session=off_session,
            )
        )
    except (GatewayRejected, GatewayUnavailable) as exc:
        outcome = exc
    intent = apply_confirmation(session, gateway, payment, outcome, off_session=off_session)
    if intent is None:
        return ChargeAnswer("processing", message=CHECKING_WITH_THE_BANK)
    return _answer(payment, intent)


def count_confirmation(payment: Payment, payment_method_id: str) -> str:
    """Before a confirmation is sent (row lock held): the attempt counted, the card recorded;
    its Idempotency-Key (payment id + attempt + card)."""
    payment.confirm_attempts += 1
    payment.payment_method_id = payment_method_id
    failpoint(failpoints.BEFORE_CONFIRM, payment.id, payment.user_id)
    return f"pay_api-pi-confirm-{payment.id}-{payment.confirm_attempts}-{payment_method_id}"


def apply_confirmation(
    session: Session,
    gateway: Gateway,
    payment: Payment,
    outcome: IntentState | Exception,
    *,
    off_session: bool,
) -> IntentState | None:
    """A confirmation's outcome applied in the transaction that sent it (row lock held): Stripe's
    view of the intent as applied, or None when Stripe's answer was lost."""
    if isinstance(outcome, GatewayRejected):
        log.warning(
            "stripe refused the confirmation",
            extra={"payment_id": str(payment.id), "stripe_code": outcome.stripe_code},
        )
        # Refused for another reason than the intent's state: nothing was charged.
        return _apply_stripe_now(session, gateway, payment)
    if isinstance(outcome, GatewayUnavailable):
        # Stripe may or may not have charged: say so (in the same transaction, with the
        # attempt counted) instead of rolling back to a `pending` that invites paying again.
        log.warning(
            "stripe's answer to the confirmation was lost",
            extra={"payment_id": str(payment.id), "attempt": payment.confirm_attempts},
        )
        state.lost_confirmation(session, payment)
        return None
    if isinstance(outcome, Exception):
        raise outcome
    failpoint(failpoints.AFTER_CONFIRM, payment.id, payment.user_id)
    state.apply_intent(session, payment, outcome)
    log.info(
        "payment confirmed at stripe",
        extra={
            "payment_id": str(payment.id),
            "stripe_status": outcome.status,
            "attempt": payment.confirm_attempts,
            "off_session": off_session,
        },
    )
    return outcome


def sync(*, db: Database, gateway: Gateway, payment_id: uuid.UUID) -> ChargeAnswer:
    """After 3-D Secure in the browser: Stripe's current state, applied and answered."""
    payment, intent = _refreshed(db=db, gateway=gateway, payment_id=payment_id)
    if intent is None:
        return ChargeAnswer("pending") if not payment.is_final else _answer_closed(payment)
    return _answer(payment, intent)


def page_status(payment: Payment) -> dict:
    """`GET /pay/<id>/status`: what the page shows, from our own state."""
    error = None
    if payment.status in ("pending", "failed", "canceled") and (
        payment.failure_code or payment.failure_message
    ):
        error = {
            "code": payment.failure_code,
            "message": readable_failure(payment.failure_code, payment.failure_message),
        }
    return {
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
        "error": error,
    }


def _answer(payment: Payment, intent: IntentState) -> ChargeAnswer:
    if payment.status == "succeeded":
        return ChargeAnswer("succeeded")
    if payment.status == "processing":
        return ChargeAnswer("processing")
    if payment.is_final:
        return _answer_closed(payment)
    if intent.status == "requires_action":
        return ChargeAnswer("requires_action", client_secret=intent.client_secret)
    if intent.status == "requires_payment_method" and intent.failure_code:
        return ChargeAnswer(
            "declined",
            error_code=intent.failure_code,
            error_message=readable_failure(intent.failure_code, intent.failure_message),
        )
    # requires_payment_method without an error, or requires_confirmation: nothing was charged.
    return ChargeAnswer(
        "declined",
        error_code="payment_incomplete",
        error_message="The payment was not completed. Try again.",
    )


def _answer_closed(payment: Payment) -> ChargeAnswer:
    if payment.status == "succeeded":
        return ChargeAnswer("succeeded")
    raise PaymentNotPayable(_closed_message(payment))


def _closed_message(payment: Payment) -> str:
    if payment.status == "succeeded":
        return "This payment has already been paid."
    return "This payment was closed and can no longer be paid."
