"""The payment page and its JSON calls (public: the payment id is unguessable).

Card numbers never reach pay_api: Stripe.js saves the card with a SetupIntent, then pay_api
charges the saved payment method (see service.charge).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, render_template

from pay_api import extensions as ext
from pay_api.errors import PaymentNotFound
from pay_api.money import format_money
from pay_api.payments import service
from pay_api.payments.schemas import ChargeIn
from pay_api.validation import parse_body

bp = Blueprint("payment_page", __name__, url_prefix="/pay")


def _payment_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise PaymentNotFound() from None


@bp.get("/<raw_id>")
def show(raw_id: str):
    try:
        payment = service.find_payment(db=ext.db(), payment_id=_payment_id(raw_id))
    except PaymentNotFound:
        return render_template("not_found.html"), 404
    title, _, details = (payment.description or "Subscription").partition("\n")
    settings = ext.settings()
    response = render_template(
        "pay.html",
        payment=payment,
        title=title.strip() or "Subscription",
        details=details.strip(),
        amount_text=format_money(payment.amount, payment.currency),
        status=service.page_status(payment),
        checking_message=service.CHECKING_WITH_THE_BANK,
        stripe_js_url=settings.stripe_js,
        config={
            "paymentId": str(payment.id),
            "publishableKey": settings.stripe_publishable_key,
            "status": payment.status,
            "returnUrl": payment.return_url,
        },
    )
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.post("/<raw_id>/setup-intent")
def setup_intent(raw_id: str):
    client_secret = service.start_card_setup(
        db=ext.db(), gateway=ext.gateway(), payment_id=_payment_id(raw_id)
    )
    return jsonify(
        {"client_secret": client_secret, "publishable_key": ext.settings().stripe_publishable_key}
    )


@bp.post("/<raw_id>/charge")
def charge(raw_id: str):
    payment_id = _payment_id(raw_id)
    data = parse_body(ChargeIn)
    answer = service.charge(
        db=ext.db(),
        gateway=ext.gateway(),
        payment_id=payment_id,
        setup_intent_id=data.setup_intent_id,
    )
    return jsonify(answer.to_body())


@bp.post("/<raw_id>/sync")
def sync(raw_id: str):
    answer = service.sync(db=ext.db(), gateway=ext.gateway(), payment_id=_payment_id(raw_id))
    return jsonify(answer.to_body())


@bp.get("/<raw_id>/status")
def status(raw_id: str):
    payment = service.find_payment(db=ext.db(), payment_id=_payment_id(raw_id))
    return jsonify(service.page_status(payment))
