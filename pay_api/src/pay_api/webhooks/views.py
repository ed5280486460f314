"""`POST /webhooks/stripe`: signature checked on the raw body before anything is stored."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from pay_api import extensions as ext
from pay_api.webhooks import service
from pay_api.webhooks.schemas import read_event

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
def stripe_webhook():
    payload = request.get_data(cache=False, as_text=False)
    body = ext.gateway().parse_webhook(payload, request.headers.get("Stripe-Signature"))
    applied = service.handle_event(db=ext.db(), gateway=ext.gateway(), event=read_event(body))
    return jsonify({"received": True, "duplicate": not applied})
