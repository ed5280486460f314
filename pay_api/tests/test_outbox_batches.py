"""Notifications go to billing in batches: one POST per round, each row marked from its own
result; a POST that fails as a whole backs every row in it off."""

import uuid

import pytest
from pay_api.db import utcnow
from pay_api.outbox import BATCH_PATH, BillingSender, OutboxMessage, deliver_due
from sqlalchemy import select, update

from .conftest import free_port, make_settings


def queue(db, count: int, *, request_id: str | None = None) -> str:
    """`count` notifications about one (made-up) payment, as `add_payment_event` writes them;
    the payment id they share."""
    payment_id = str(uuid.uuid4())
    with db.transaction() as session:
        for n in range(count):
            event_id = str(uuid.uuid4())
            session.add(
                OutboxMessage(
                    event_id=uuid.UUID(event_id),
                    payload={
                        "event_id": event_id,
                        "object": "payment",
                        "payment_id": payment_id,
                        "refund_id": None,
                        "status": "processing",
                        "amount": 1000 + n,
                        "currency": "usd",
                        "amount_refunded": 0,
                        "refunded_outside": 0,
                        "failure_code": None,
                        "failure_message": "x" * 200,
                        "stripe_id": "pi_batch",
                        "occurred_at": utcnow().isoformat(),
                    },
                    request_id=request_id,
                )
            )
    return payment_id


def rows(db, payment_id) -> list[OutboxMessage]:
    with db.transaction() as session:
        return session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.payload["payment_id"].astext == payment_id)
            .order_by(OutboxMessage.id)
        ).all()


def make_due(db, payment_id) -> None:
    with db.transaction() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.payload["payment_id"].astext == payment_id)
            .values(next_attempt_at=utcnow())
        )


def ids(db, payment_id) -> list[int]:
    return [r.id for r in rows(db, payment_id)]


def drain(db, sender) -> int:
    """Deliver rounds until one finds nothing due (other tests' rows too); rows tried."""
    total = 0
    while tried := deliver_due(db, sender):
        total += tried
    return total


def posts_with(billing, payment_id) -> list[dict]:
    return [
        p
        for p in billing.posts
        if isinstance(p.get("json"), dict)
        and any(e.get("payment_id") == payment_id for e in p["json"].get("events", []))
    ]


@pytest.fixture
def sender(app):
    sender = BillingSender(app.extensions["pay_api.settings"])
    yield sender
    sender.close()


def test_each_row_is_marked_from_its_own_result(db, billing, sender):
    payment_id = queue(db, 5, request_id="purchase-7")
    applied, duplicate, unknown, mismatch, conflict = (
        str(r.event_id) for r in rows(db, payment_id)
    )
    errors = {
        unknown: {"status": 404, "code": "payment_not_found", "message": "No such payment."},
        mismatch: {"status": 422, "code": "event_mismatch", "message": "Amount 1 vs 2."},
        conflict: {"status": 409, "code": "transaction_conflict", "message": "Try again."},
    }

    def answer(event):
        if event["event_id"] in errors:
            return {"error": errors[event["event_id"]]}
        return {"applied": event["event_id"] == applied}

    billing.answer = answer
    assert deliver_due(db, sender, ids=ids(db, payment_id)) == 5
    (post,) = posts_with(billing, payment_id)  # one POST for the round, in the rows' order
    assert post["path"] == BATCH_PATH and post["answered"] == 200
    assert [e["event_id"] for e in post["json"]["events"]] == [
        applied,
        duplicate,
        unknown,
        mismatch,
        conflict,
    ]
    assert {e["request_id"] for e in post["json"]["events"]} == {"purchase-7"}
    assert post["headers"]["X-Request-ID"]

    by_id = {str(r.event_id): r for r in rows(db, payment_id)}
    for event_id in (applied, duplicate):  # applied, or billing had it already: delivered
        row = by_id[event_id]
        assert row.delivered_at is not None and row.attempts == 1 and row.last_error is None
    now = utcnow()
    for event_id, error in errors.items():
        row = by_id[event_id]
        assert row.delivered_at is None and row.attempts == 1
        assert row.next_attempt_at > now  # backed off, as after any failed attempt
        assert row.last_error == f"HTTP {error['status']} {error['code']}: {error['message']}"

    # Not due yet: nothing is sent again; once due (and billing takes them), only they go.
    drain(db, sender)
    assert len(posts_with(billing, payment_id)) == 1
    billing.answer = None
    make_due(db, payment_id)
    drain(db, sender)
    again = posts_with(billing, payment_id)[-1]
    assert [e["event_id"] for e in again["json"]["events"]] == [unknown, mismatch, conflict]
    assert all(r.delivered_at is not None for r in rows(db, payment_id))
    assert {str(r.event_id): r.attempts for r in rows(db, payment_id)} == {
        applied: 1,
        duplicate: 1,
        unknown: 2,
        mismatch: 2,
        conflict: 2,
    }


def _wrong_id(event):
    return {"event_id": str(uuid.uuid4()), "applied": True}


def _one_left_out(event):
    return None if event["amount"] == 1001 else {"applied": True}


def _neither(event):
    return {"ok": True}


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ({"status": 500}, "HTTP 500: "),
        ({"status": 422}, "HTTP 422: "),  # billing refused the whole batch
        ({"raw": b"<html>proxy</html>"}, "does not match the batch"),
        ({"raw": b'{"applied": true}'}, "does not match the batch"),
        ({"answer": _wrong_id}, "does not match the batch"),
        ({"answer": _one_left_out}, "does not match the batch"),
        ({"answer": _neither}, "does not match the batch"),
    ],
)
def test_a_batch_that_fails_as_a_whole_backs_off_every_row(db, billing, sender, setup, error):
    payment_id = queue(db, 3)
    for name, value in setup.items():
        setattr(billing, name, value)
    assert deliver_due(db, sender, ids=ids(db, payment_id)) == 3
    assert len(posts_with(billing, payment_id)) == 1
    now = utcnow()
    for row in rows(db, payment_id):
        assert row.delivered_at is None and row.attempts == 1
        assert row.next_attempt_at > now
        assert error in row.last_error

    billing.status, billing.raw, billing.answer = 200, None, None
    make_due(db, payment_id)
    drain(db, sender)
    assert all(r.delivered_at is not None and r.attempts == 2 for r in rows(db, payment_id))


def test_billing_unreachable_backs_off_every_row(db, billing, database_url, localstripe):
    payment_id = queue(db, 4)
    down = BillingSender(
        make_settings(database_url, localstripe, f"http://127.0.0.1:{free_port()}")
    )
    try:
        assert deliver_due(db, down, ids=ids(db, payment_id)) == 4
    finally:
        down.close()
    for row in rows(db, payment_id):
        assert row.delivered_at is None and row.attempts == 1 and "Connect" in row.last_error


def test_rounds_take_the_batch_size_and_posts_stay_under_the_byte_budget(
    db, billing, sender, database_url, localstripe
):
    payment_id = queue(db, 25)
    mine = ids(db, payment_id)
    small = make_settings(database_url, localstripe, billing.url, PAY_API_OUTBOX_BATCH=10)
    with_ten = BillingSender(small)
    try:
        assert [deliver_due(db, with_ten, ids=mine) for _ in range(4)] == [10, 10, 5, 0]
    finally:
        with_ten.close()
    assert [len(p["json"]["events"]) for p in posts_with(billing, payment_id)] == [10, 10, 5]

    # At most 4096 bytes a POST: one round, several POSTs, every row delivered.
    payment_id = queue(db, 30)
    tight = make_settings(database_url, localstripe, billing.url, PAY_API_OUTBOX_BATCH_BYTES=4096)
    budgeted = BillingSender(tight)
    try:
        assert deliver_due(db, budgeted, ids=ids(db, payment_id)) == 30
    finally:
        budgeted.close()
    posts = posts_with(billing, payment_id)
    assert len(posts) > 1
    assert all(p["bytes"] <= 4096 for p in posts)
    assert sum(len(p["json"]["events"]) for p in posts) == 30
    assert all(r.delivered_at is not None for r in rows(db, payment_id))


def test_a_too_large_batch_is_halved_until_billing_takes_it(db, billing, sender):
    """billing's body limit lower than our budget (413): the POST is split, nothing backs off."""
    payment_id = queue(db, 12)
    billing.max_body_bytes = 3000  # four or five of these events
    seen = len(billing.posts)
    assert deliver_due(db, sender, ids=ids(db, payment_id)) == 12
    assert all(r.delivered_at is not None and r.attempts == 1 for r in rows(db, payment_id))
    taken = posts_with(billing, payment_id)
    assert sum(len(p["json"]["events"]) for p in taken) == 12
    assert all(p["bytes"] <= 3000 for p in taken)
    assert [p["answered"] for p in billing.posts[seen:] if p["answered"] == 413][:2] == [413, 413]


def test_the_worker_drains_a_backlog_in_batches(monkeypatch, db, billing, sender, settings):
    from pay_api import config, worker

    drain(db, sender)  # what earlier tests left due
    payment_id = queue(db, 230)
    for name, value in {
        "PAY_API_DATABASE_URL": settings.database_url,
        "STRIPE_SECRET_KEY": "sk_test_offline",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "SERVICE_JWT_SECRET": settings.service_jwt_secret,
        "BILLING_URL": billing.url,
    }.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    try:
        assert worker.run(once=True) >= 230
    finally:
        config.get_settings.cache_clear()
    assert all(r.delivered_at is not None for r in rows(db, payment_id))
    # Rounds of 100 (a row of an earlier test falling due may share one).
    posts = posts_with(billing, payment_id)
    assert len(posts) == 3 and all(len(p["json"]["events"]) <= 100 for p in posts)
