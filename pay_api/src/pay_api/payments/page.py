"""The payment page and its JSON calls (public: the payment id is unguessable).

Card numbers never reach pay_api: Stripe.js saves the card with a SetupIntent, then pay_api
charges the saved payment method (see service.charge).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, render_template, request

from pay_api import extensions as ext
from pay_api.errors import LinkExpired, LinkInvalid, PaymentNotFound
from pay_api.links import verify_link
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


_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _check_link(payment_id: uuid.UUID, use: str) -> None:
    verify_link(
        request.args.get("t"),
        secret=ext.settings().service_jwt_secret,
        subject=payment_id,
        use=use,
    )


@bp.get("/<raw_id>")
def show(raw_id: str):
    return _payment_page(raw_id, template="pay.html")


@bp.get("/<raw_id>/card")
def card(raw_id: str):
    """The emailed card-update link of a renewal: the payment page's flow (save a card with a
    SetupIntent, charge the renewal's one PaymentIntent with it at once)."""
    return _linked_page(raw_id, use="card", template="pay.html", card_update=True)


@bp.get("/<raw_id>/authenticate")
def authenticate_page(raw_id: str):
    """The emailed authentication link of a renewal that needs 3-D Secure."""
    return _linked_page(raw_id, use="authenticate", template="authenticate.html")


def _linked_page(raw_id: str, *, use: str, template: str, card_update: bool = False):
    try:
        _check_link(_payment_id(raw_id), use)
    except PaymentNotFound:
        return render_template("not_found.html"), 404
    except (LinkInvalid, LinkExpired) as error:
        return render_template("link_error.html", message=error.message), 403, _PAGE_HEADERS
    return _payment_page(raw_id, template=template, card_update=card_update)


@bp.post("/<raw_id>/authenticate")
def authenticate(raw_id: str):
    """The secret and saved card the page hands to Stripe.js's `confirmCardPayment`."""
    payment_id = _payment_id(raw_id)
    _check_link(payment_id, "authenticate")
    client_secret, payment_method_id = service.authentication_details(
        db=ext.db(), gateway=ext.gateway(), payment_id=payment_id
    )
    return (
        jsonify(
            {
                "client_secret": client_secret,
                "payment_method_id": payment_method_id,
                "publishable_key": ext.settings().stripe_publishable_key,
            }
        ),
        200,
        _PAGE_HEADERS,
    )


def _payment_page(raw_id: str, *, template: str, card_update: bool = False):
    try:
        payment = service.find_payment(db=ext.db(), payment_id=_payment_id(raw_id))
    except PaymentNotFound:
        return render_template("not_found.html"), 404
    title, _, details = (payment.description or "Subscription").partition("\n")
    settings = ext.settings()
    response = render_template(
        template,
        card_update=card_update,
        payment=payment,
        title=title.strip() or "Subscription",
        details=details.strip(),
        amount_text=format_money(payment.amount, payment.currency),
        gross_text=format_money(payment.gross_amount or payment.amount, payment.currency),
        discount_text=(
            format_money(payment.discount_amount, payment.currency)
            if payment.discount_amount
            else None
        ),
        status=service.page_status(payment),
        checking_message=service.CHECKING_WITH_THE_BANK,
        stripe_js_url=settings.stripe_js,
        config={
            "paymentId": str(payment.id),
            "publishableKey": settings.stripe_publishable_key,
            "status": payment.status,
            "returnUrl": payment.return_url,
            "linkToken": request.args.get("t"),
        },
    )
    return response, 200, _PAGE_HEADERS


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
