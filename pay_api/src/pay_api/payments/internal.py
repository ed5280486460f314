"""billing's API for payments (service token, iss=billing, aud=pay_api)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from pay_api import extensions as ext
from pay_api.auth import require_service
from pay_api.errors import PayApiError
from pay_api.payments import renewals, service
from pay_api.payments.models import Payment
from pay_api.payments.schemas import CreatePaymentIn, OffSessionChargeIn, RenewalChargesIn
from pay_api.validation import parse_body

bp = Blueprint("payments_internal", __name__, url_prefix="/internal/v1")


def payment_url(payment_id: uuid.UUID) -> str:
    return f"{ext.settings().public_url.rstrip('/')}/pay/{payment_id}"


def payment_body(payment: Payment, *, full: bool = True) -> dict:
    body = {
        "payment_id": str(payment.id),
        "status": payment.status,
        "payment_url": payment_url(payment.id),
        "amount": payment.amount,
        "currency": payment.currency,
        "stripe_payment_intent_id": payment.stripe_payment_intent_id,
    }
    if full:
        body.update(
            amount_refunded=payment.amount_refunded,
            refunded_outside=payment.refunded_outside,
            failure_code=payment.failure_code,
            failure_message=payment.failure_message,
        )
    return body


@bp.post("/payments")
@require_service("billing")
def create_payment():
    data = parse_body(CreatePaymentIn)
    payment, created = service.create_payment(
        db=ext.db(),
        payment_id=data.payment_id,
        user_id=data.user_id,
        amount=data.amount,
        currency=data.currency,
        description=data.description,
        return_url=data.return_url,
        price_shown=data.price_shown(),
    )
    return jsonify(payment_body(payment, full=False)), 201 if created else 200


@bp.get("/payments/<uuid:payment_id>")
@require_service("billing")
def get_payment(payment_id: uuid.UUID):
    if request.args.get("refresh") in ("1", "true"):
        payment = service.refresh_payment(db=ext.db(), gateway=ext.gateway(), payment_id=payment_id)
    else:
        payment = service.find_payment(db=ext.db(), payment_id=payment_id)
    return jsonify(payment_body(payment))


@bp.post("/payments/<uuid:payment_id>/cancel")
@require_service("billing")
def cancel_payment(payment_id: uuid.UUID):
    payment = service.cancel_payment(db=ext.db(), gateway=ext.gateway(), payment_id=payment_id)
    return jsonify(payment_body(payment))


@bp.get("/customers/<string:stripe_customer_id>")
@require_service("billing")
def get_customer(stripe_customer_id: str):
    """Whose Stripe Customer this is (billing's customer search asks; pay_api owns the link)."""
    customer = service.find_customer(db=ext.db(), stripe_customer_id=stripe_customer_id)
    return jsonify(
        {"stripe_customer_id": customer.stripe_customer_id, "user_id": str(customer.user_id)}
    )


@bp.post("/payments/<uuid:payment_id>/charge-off-session")
@require_service("billing")
def charge_off_session(payment_id: uuid.UUID):
    """A renewal: charge the user's saved card with the customer away (docs/contracts.md)."""
    data = parse_body(OffSessionChargeIn)
    payment = service.charge_off_session(
        db=ext.db(), gateway=ext.gateway(), payment_id=payment_id, attempt=data.attempt
    )
    return jsonify(payment_body(payment))


@bp.post("/renewals/charges")
@require_service("billing")
def charge_renewals():
    """Renewals in a batch: each registered if new and charged off-session as its attempt, with
    an answer of its own (docs/contracts.md)."""
    data = parse_body(RenewalChargesIn)
    answers = renewals.charge_renewals(
        db=ext.db(),
        gateway=ext.gateway(),
        calls=ext.stripe_calls(),
        charges=data.charges,
    )
    results = []
    for charge, answer in zip(data.charges, answers, strict=True):
        if isinstance(answer, PayApiError):
            error = {"status": answer.status, "code": answer.code, "message": str(answer)}
            results.append({"payment_id": str(charge.payment_id), "error": error})
        else:
            results.append({"payment_id": str(charge.payment_id), "payment": payment_body(answer)})
    return jsonify({"results": results})
