"""The payment state machine: every answer from Stripe (confirm, sync, refresh, webhook) goes
through `apply_intent`, so the rules are the same whoever brings the news.

Rules: a final status (succeeded, canceled, failed) never changes; a snapshot about an earlier
attempt (another payment method than the current one) does not overwrite the current attempt's
details. Statuses only go up, with one exception: `processing` goes back to `pending` when Stripe
says the CURRENT attempt needs the user again (`requires_payment_method` after an asynchronous
failure, or `requires_confirmation`), so the payment can be retried or expire instead of staying
open forever.

`unknown`: the answer to our confirmation was lost (`lost_confirmation`), so Stripe may or may not
have charged. Any news from Stripe about the intent moves it to what Stripe says, whatever the
rank. A snapshot asked under the payment's row lock (`current=True`: refresh, sync, charge, cancel)
is the truth even when it names another payment method than our lost attempt (the confirmation
never reached Stripe: its method is then what Stripe holds); a webhook about an earlier attempt
(non-final, another payment method) does not settle it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from pay_api import outbox, verification
from pay_api.flags.service import raise_flag
from pay_api.gateway import AUTHENTICATION_REQUIRED, IntentState
from pay_api.payments.models import FINAL_PAYMENT_STATUSES, Payment
from pay_api.refunds import totals

_RANK = {"pending": 0, "processing": 1, "succeeded": 2, "canceled": 2, "failed": 2}
# Stripe's statuses that send a processing payment back to the user (see `_back_to_the_user`).
_NEEDS_THE_USER_AGAIN = frozenset({"requires_payment_method", "requires_confirmation"})
# Stripe cancels an intent itself after too many failed confirmations: for us it failed.
_STRIPE_GAVE_UP = frozenset({"automatic", "failed_invoice", "void_invoice"})


def status_for(intent: IntentState) -> str:
    """Stripe's PaymentIntent status → pay_api's payment status (docs/contracts.md)."""
    if intent.status == "succeeded":
        return "succeeded"
    if intent.status in ("processing", "requires_capture"):
        return "processing"
    if intent.status == "canceled":
        return "failed" if intent.cancellation_reason in _STRIPE_GAVE_UP else "canceled"
    # requires_payment_method (no card yet, or a decline the user may retry),
    # requires_confirmation, requires_action (3-D Secure to finish)
    return "pending"


def apply_intent(
    session: Session,
    payment: Payment,
    intent: IntentState,
    *,
    current: bool = False,
    source: str = "stripe",
) -> bool:
    """Apply Stripe's view of the payment's intent; write an outbox row if billing must know.

    `current`: the snapshot was asked of Stripe under the payment's row lock, so nothing of ours
    happened after it. An intent that is not our payment's (amount, currency, customer,
    metadata) changes nothing and is flagged (verification.py); so is a payment we hold
    succeeded that Stripe says was never charged (only a manager may undo a success)."""
    if not verification.intent_matches(session, payment, intent, source=source):
        return False
    before = (payment.status, payment.failure_code, payment.failure_message)
    before_refunded = payment.amount_refunded
    new_status = status_for(intent)
    if current and payment.status == "succeeded" and new_status != "succeeded":
        raise_flag(
            session,
            kind="diverged_from_stripe",
            stripe_object_id=intent.id,
            payment_id=payment.id,
            source=source,
            details={"ours": payment.status, "stripe": intent.status},
        )

    # A refunded total counts only against a charge that succeeded (see IntentState).
    if intent.amount_refunded is not None and intent.status == "succeeded":
        totals.apply_stripe_total(session, payment, intent.amount_refunded)

    if payment.status == "unknown":
        moves = current or not _about_an_earlier_attempt(payment, intent, new_status)
        if moves and current and intent.payment_method_id != payment.payment_method_id:
            # Our lost confirmation never reached Stripe: the latest attempt is the one it holds.
            payment.payment_method_id = intent.payment_method_id
    else:
        moves = (
            payment.status not in FINAL_PAYMENT_STATUSES
            and not _about_an_earlier_attempt(payment, intent, new_status)
            and (
                _RANK[new_status] >= _RANK[payment.status]
                or _back_to_the_user(payment, intent, new_status)
            )
        )
    if moves:
        payment.status = new_status
        payment.stripe_status = intent.status
        if intent.failure_code and intent.status in ("requires_payment_method", "requires_action"):
            # A decline, or (off-session, read by the gateway) `authentication_required`.
            payment.failure_code = intent.failure_code
            payment.failure_message = intent.failure_message
        elif new_status in ("succeeded", "processing") or (
            intent.status == "requires_action" and not _waits_for_the_cardholder(payment, intent)
        ):
            payment.failure_code = None  # a new attempt is under way or done
            payment.failure_message = None

    changed = (payment.status, payment.failure_code, payment.failure_message) != before
    if changed or payment.amount_refunded != before_refunded:
        outbox.add_payment_event(session, payment)
        return True
    return False


def _waits_for_the_cardholder(payment: Payment, intent: IntentState) -> bool:
    """Still the attempt that needs the cardholder's authentication, seen again: its reason stays.

    An off-session confirmation that needs 3-D Secure is `authentication_required` (the gateway
    reads localstripe's `requires_action` so); a later look at the same intent (the reconciler's
    refresh, a webhook) shows localstripe's `requires_action` without the reason, and real Stripe's
    shows `requires_action` once the customer authenticates on the emailed link. Neither is a new
    attempt: the payment still waits for the cardholder, and a renewal retry must read it so."""
    return payment.failure_code == AUTHENTICATION_REQUIRED and intent.payment_method_id in (
        None,
        payment.payment_method_id,
    )


def _about_an_earlier_attempt(payment: Payment, intent: IntentState, new_status: str) -> bool:
    """A late, non-final snapshot made with another payment method than our latest attempt."""
    if new_status in FINAL_PAYMENT_STATUSES:
        return False  # money moved (or the intent closed): always true, whatever the attempt
    return bool(
        intent.payment_method_id
        and payment.payment_method_id
        and intent.payment_method_id != payment.payment_method_id
    )


def _back_to_the_user(payment: Payment, intent: IntentState, new_status: str) -> bool:
    """processing → pending: the current attempt failed (or stopped) after it was processing.

    Only for a snapshot made with the current attempt's payment method: a late event about an
    earlier attempt is ignored (`_about_an_earlier_attempt` already refused another method; here a
    snapshot that names no method is not trusted either)."""
    return (
        payment.status == "processing"
        and new_status == "pending"
        and intent.status in _NEEDS_THE_USER_AGAIN
        and intent.payment_method_id is not None
        and intent.payment_method_id == payment.payment_method_id
    )


def lost_confirmation(session: Session, payment: Payment) -> bool:
    """Stripe's answer to our confirmation was lost: `unknown` until Stripe tells us more."""
    if payment.status in FINAL_PAYMENT_STATUSES or payment.status == "unknown":
        return False
    payment.status = "unknown"
    payment.failure_code = None  # an earlier decline no longer describes the payment
    payment.failure_message = None
    outbox.add_payment_event(session, payment)
    return True


def set_status(session: Session, payment: Payment, status: str) -> bool:
    """A transition decided by pay_api itself (cancel before any intent existed)."""
    if payment.status == "unknown":
        return False  # only Stripe's news leaves it (an unknown payment always has an intent)
    if payment.status in FINAL_PAYMENT_STATUSES or _RANK[status] < _RANK[payment.status]:
        return False
    if payment.status == status:
        return False
    payment.status = status
    outbox.add_payment_event(session, payment)
    return True
