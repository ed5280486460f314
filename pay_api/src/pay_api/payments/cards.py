"""The card-update page: a user saves another card for their next renewals (Stripe.js
SetupIntent, as on the payment page), opened by a signed link billing hands out
(`use = card_update`, `sub` = the user id; see links.py). Nothing is charged here: a renewal in
dunning has its own link (/pay/<payment id>/card) that pays it at once."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, render_template, request

from pay_api import extensions as ext
from pay_api.errors import LinkExpired, LinkInvalid
from pay_api.links import verify_link
from pay_api.payments import service
from pay_api.payments.schemas import ChargeIn
from pay_api.validation import parse_body

bp = Blueprint("card_update", __name__, url_prefix="/cards")

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _user(raw_id: str) -> uuid.UUID:
    """The user the link opens (an id that is not a UUID opens nothing)."""
    try:
        user_id = uuid.UUID(raw_id)
    except ValueError:
        raise LinkInvalid() from None
    verify_link(
        request.args.get("t"),
        secret=ext.settings().service_jwt_secret,
        subject=user_id,
        use="card_update",
    )
    return user_id


@bp.get("/<raw_id>")
def page(raw_id: str):
    try:
        _user(raw_id)
    except (LinkInvalid, LinkExpired) as error:
        return render_template("link_error.html", message=error.message), 403, _HEADERS
    settings = ext.settings()
    return (
        render_template(
            "cards.html",
            stripe_js_url=settings.stripe_js,
            config={
                "userId": raw_id,
                "publishableKey": settings.stripe_publishable_key,
                "linkToken": request.args.get("t"),
            },
        ),
        200,
        _HEADERS,
    )


@bp.post("/<raw_id>/setup-intent")
def setup_intent(raw_id: str):
    client_secret = service.start_card_update(
        db=ext.db(), gateway=ext.gateway(), user_id=_user(raw_id)
    )
    return jsonify(
        {"client_secret": client_secret, "publishable_key": ext.settings().stripe_publishable_key}
    )


@bp.post("/<raw_id>/save")
def save(raw_id: str):
    user_id = _user(raw_id)
    data = parse_body(ChargeIn)
    service.update_card(
        db=ext.db(), gateway=ext.gateway(), user_id=user_id, setup_intent_id=data.setup_intent_id
    )
    return jsonify({"status": "saved"})
