"""`GET /internal/v1/flags`: what pay_api refused to apply, for a manager (service token from
the admin or billing)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from pay_api import extensions as ext
from pay_api.auth import require_service
from pay_api.errors import ValidationError
from pay_api.flags import service
from pay_api.flags.models import ManagerFlag

bp = Blueprint("flags", __name__, url_prefix="/internal/v1/flags")

MAX_LIMIT = 500


def flag_body(flag: ManagerFlag) -> dict:
    return {
        "id": flag.id,
        "kind": flag.kind,
        "stripe_object_id": flag.stripe_object_id,
        "payment_id": str(flag.payment_id) if flag.payment_id else None,
        "source": flag.source,
        "details": flag.details,
        "occurrences": flag.occurrences,
        "first_seen_at": flag.first_seen_at.isoformat(),
        "last_seen_at": flag.last_seen_at.isoformat(),
    }


@bp.get("")
@require_service("admin", "billing")
def list_flags():
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}.")
    flags = service.list_flags(db=ext.db(), limit=int(raw))
    return jsonify({"items": [flag_body(flag) for flag in flags]})
