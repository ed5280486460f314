"""Emails: written in the transaction that caused them (outbox), sent by the worker over real
SMTP to the project's local mail server, read back from it; SMTP down loses nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jwt
import pytest
from billing.notifications import emails
from billing.notifications.links import link_url
from billing.resources import Resources
from billing.worker.jobs import send_emails
from conftest import SERVICE_SECRET, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _about(resources, user_id: uuid.UUID) -> emails.About:
    return emails.About(
        settings=resources.settings,
        user_id=user_id,
        subscription_id=uuid.uuid4(),
        plan_name="Premium",
    )


async def _queue(resources, email: emails.Email, *, commit: bool = True) -> None:
    async with resources.sessionmaker() as session:
        emails.queue(session, email)
        if commit:
            await session.commit()
        else:
            await session.rollback()


async def test_a_queued_email_reaches_the_mail_server_once(resources, mail_server):
    user_id = uuid.uuid4()
    payment_id = uuid.uuid4()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    email = emails.receipt(
        _about(resources, user_id),
        payment_id=payment_id,
        amount=999,
        currency="usd",
        period_start=start,
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
        renewal=True,
    )
    await _queue(resources, email)
    # An email whose transaction rolled back never exists.
    await _queue(
        resources,
        emails.subscription_ended(_about(resources, user_id), ended_at=start, reason="test"),
        commit=False,
    )
    assert await send_emails(resources, datetime.now(UTC)) >= 1
    assert await send_emails(resources, datetime.now(UTC)) == 0  # nothing twice

    (message,) = await mail_server.messages(f"{user_id}@users.cinema.local")
    assert message["subject"] == "Receipt: Premium, $9.99"
    assert "Your subscription was renewed." in message["text"]
    assert "01 Jan 2026 – 01 Feb 2026" in message["text"]
    assert str(payment_id) in message["text"]


async def test_a_reader_that_polls_gets_only_the_messages_after_the_last_it_saw(
    resources, mail_server
):
    user_id = uuid.uuid4()
    about = _about(resources, user_id)
    await _queue(
        resources, emails.subscription_ended(about, ended_at=datetime.now(UTC), reason="1")
    )
    assert await send_emails(resources, datetime.now(UTC)) >= 1
    (first,) = await mail_server.messages(f"{user_id}@users.cinema.local")
    await _queue(
        resources, emails.subscription_ended(about, ended_at=datetime.now(UTC), reason="2")
    )
    assert await send_emails(resources, datetime.now(UTC)) >= 1
    (second,) = await mail_server.messages(f"{user_id}@users.cinema.local", after=first["id"])
    assert second["id"] > first["id"] and ": 2" in second["text"]
    assert await mail_server.messages(f"{user_id}@users.cinema.local", after=second["id"]) == []


async def test_smtp_down_keeps_the_email_until_it_is_up(resources, mail_server, database_url):
    user_id = uuid.uuid4()
    email = emails.subscription_ended(
        _about(resources, user_id), ended_at=datetime.now(UTC), reason="the grace period ran out"
    )
    await _queue(resources, email)
    down = Resources(resources.settings.model_copy(update={"relay_port": free_port()}))
    try:
        assert await send_emails(down, datetime.now(UTC)) == 0
    finally:
        await down.aclose()
    assert await mail_server.messages(f"{user_id}@users.cinema.local") == []
    assert await send_emails(resources, datetime.now(UTC)) >= 1
    (message,) = await mail_server.messages(f"{user_id}@users.cinema.local")
    assert message["subject"] == "Your Premium subscription has ended"


async def test_links_are_signed_for_one_payment_and_use(resources):
    payment_id = uuid.uuid4()
    url = link_url(resources.settings, payment_id=payment_id, use="card")
    assert url.startswith(f"http://pay.public.test/pay/{payment_id}/card?t=")
    claims = jwt.decode(
        url.split("?t=")[1], SERVICE_SECRET, algorithms=["HS256"], audience="pay_api:link"
    )
    assert claims["sub"] == str(payment_id) and claims["use"] == "card"
    assert claims["exp"] - claims["iat"] == resources.settings.link_ttl_seconds
