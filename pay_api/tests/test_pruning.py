"""Pruning by age (pay_api.pruning): Stripe event ids and delivered outbox rows go once past their
keeping time; younger ones and undelivered outbox rows stay."""

import uuid
from datetime import timedelta

import pytest
from pay_api.db import utcnow
from pay_api.outbox import OutboxMessage
from pay_api.pruning import prune
from pay_api.webhooks.models import StripeEvent
from pydantic import ValidationError
from sqlalchemy import select

from .conftest import make_settings


def _exists(db, model, key) -> bool:
    with db.transaction() as session:
        return session.get(model, key) is not None


def test_old_event_ids_and_delivered_outbox_rows_go_recent_ones_stay(db, settings):
    now = utcnow()
    tag = uuid.uuid4().hex  # this run's event ids
    with db.transaction() as session:
        session.add_all(
            [
                StripeEvent(id=f"evt_old_{tag}", type="x", received_at=now - timedelta(days=36)),
                StripeEvent(id=f"evt_new_{tag}", type="x", received_at=now - timedelta(days=29)),
            ]
        )
        rows = {
            name: OutboxMessage(
                event_id=uuid.uuid4(),
                payload={"object": "payment", "payment_id": str(uuid.uuid4()), "status": name},
                attempts=1,
                next_attempt_at=now + timedelta(days=1),  # not due: no delivery picks it
                delivered_at=delivered,
                created_at=now - timedelta(days=60),
            )
            for name, delivered in (
                ("old", now - timedelta(days=8)),
                ("recent", now - timedelta(days=6)),
                ("undelivered", None),
            )
        }
        session.add_all(rows.values())
        session.flush()
        ids = {name: row.id for name, row in rows.items()}

    assert prune(db, settings=settings, now=now) >= 2

    assert not _exists(db, StripeEvent, f"evt_old_{tag}")
    assert _exists(db, StripeEvent, f"evt_new_{tag}")
    with db.transaction() as session:
        left = set(
            session.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_(ids.values())))
        )
    assert left == {ids["recent"], ids["undelivered"]}
    with db.transaction() as session:  # rows made up for this test: gone for the next ones
        for row_id in left:
            session.delete(session.get(OutboxMessage, row_id))


@pytest.mark.parametrize(
    ("name", "too_short"),
    [("PAY_API_KEEP_STRIPE_EVENTS_DAYS", 29), ("PAY_API_KEEP_DELIVERED_OUTBOX_DAYS", 0)],
)
def test_keeping_times_below_the_safe_minimum_are_refused(settings, name, too_short):
    with pytest.raises(ValidationError, match=name):
        make_settings(
            settings.database_url, settings.stripe_api_base, "http://b", **{name: too_short}
        )
