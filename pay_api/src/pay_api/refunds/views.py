"""billing's API for refunds (service token, iss=billing, aud=pay_api)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from pay_api import extensions as ext
from pay_api.auth import require_service
from pay_api.refunds import service
from pay_api.refunds.models import Refund
from pay_api.refunds.schemas import CreateRefundIn
from pay_api.validation import parse_body

bp = Blueprint("refunds", __name__, url_prefix="/internal/v1/refunds")


def refund_body(refund: Refund) -> dict:
    return {
        "refund_id": str(refund.id),
        "payment_id": str(refund.payment_id),
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "stripe_refund_id": refund.stripe_refund_id,
        "failure_reason": refund.failure_reason,
    }


@bp.post("")
@require_service("billing")
def create_refund():
    data = parse_body(CreateRefundIn)
    refund = service.create_refund(
        db=ext.db(),
        gateway=ext.gateway(),
        refund_id=data.refund_id,
        payment_id=data.payment_id,
        amount=data.amount,
        reason=data.reason,
    )
    # 201 also when the same refund id comes again (idempotent by refund_id, same answer).
    return jsonify(refund_body(refund)), 201


@bp.get("/<uuid:refund_id>")
@require_service("billing")
def get_refund(refund_id: uuid.UUID):
    if request.args.get("refresh") in ("1", "true"):
        refund = service.refresh_refund(db=ext.db(), gateway=ext.gateway(), refund_id=refund_id)
    else:
        refund = service.find_refund(db=ext.db(), refund_id=refund_id)
    return jsonify(refund_body(refund))
