"""Raising a flag: logged at ERROR and kept in `manager_flags` (read through
`GET /internal/v1/flags`), in the caller's transaction — the same one that refused to change
anything, so the flag and the refusal commit together.

Kinds:
* `object_mismatch` — Stripe's object (fetched with our secret key) names another amount,
  currency, customer, payment or intent than ours: nothing is applied.
* `object_missing` — a signed event names an object Stripe does not have: nothing is applied.
* `diverged_from_stripe` — pay_api holds a state Stripe contradicts and that pay_api may not
  undo by itself (a payment succeeded here that Stripe never charged).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from pay_api.db import Database, utcnow
from pay_api.flags.models import ManagerFlag

log = logging.getLogger(__name__)

SOURCE_MAX = 120


def raise_flag(
    session: Session,
    *,
    kind: str,
    stripe_object_id: str,
    source: str,
    payment_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record (or count again) a flag for a manager, and log it."""
    details = details or {}
    log.error(
        "stripe object refused, flagged for a manager",
        extra={
            "flag": kind,
            "stripe_object_id": stripe_object_id,
            "payment_id": str(payment_id) if payment_id else None,
            "source": source,
            "details": details,
        },
    )
    now = utcnow()
    statement = insert(ManagerFlag).values(
        kind=kind,
        stripe_object_id=stripe_object_id[:255],
        payment_id=payment_id,
        source=source[:SOURCE_MAX],
        details=details,
        occurrences=1,
        first_seen_at=now,
        last_seen_at=now,
    )
    session.execute(
        statement.on_conflict_do_update(
            constraint="uq_manager_flags_object",
            set_={
                "occurrences": ManagerFlag.occurrences + 1,
                "last_seen_at": now,
                "details": statement.excluded.details,
                "source": statement.excluded.source,
            },
        )
    )


def list_flags(*, db: Database, limit: int) -> list[ManagerFlag]:
    """The newest flags first."""
    with db.transaction() as session:
        return list(
            session.scalars(
                select(ManagerFlag).order_by(ManagerFlag.last_seen_at.desc()).limit(limit)
            )
        )
