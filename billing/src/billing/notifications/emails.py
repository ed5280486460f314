"""The emails billing sends, composed from plain values (pure, no I/O), and queued in the
caller's transaction as outbox rows (topic `email`): an email exists exactly when the change that
caused it committed. The worker sends them (`billing.worker.jobs.send_emails`).

Kinds: `receipt` (a payment or a renewal charged), `refund_receipt`, `renewal_failed` (with the
card-update link), `action_required` (the authentication link), `last_warning` (retries are over,
grace ends soon), `subscription_ended`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import outbox
from billing.config import Settings
from billing.money import for_people
from billing.outbox import TOPIC_EMAIL

EMAIL_KINDS = (
    "receipt",
    "refund_receipt",
    "renewal_failed",
    "action_required",
    "last_warning",
    "subscription_ended",
)


@dataclass(frozen=True)
class Email:
    kind: str
    to: str
    subject: str
    text: str
    user_id: str
    subscription_id: str | None = None
    payment_id: str | None = None


def address_of(settings: Settings, user_id: uuid.UUID) -> str:
    """Where a user's email goes: billing keeps no addresses, the template names the mailbox
    (in production a relay of the auth service that maps user ids to addresses)."""
    return settings.recipient_template.replace("{user_id}", str(user_id))


def queue(session: AsyncSession, email: Email) -> None:
    """Write the email in this transaction; it is sent once the transaction committed."""
    outbox.add(session, TOPIC_EMAIL, asdict(email))


def _day(moment: datetime) -> str:
    return moment.strftime("%d %b %Y")


@dataclass(frozen=True)
class About:
    """What every email about a subscription names."""

    settings: Settings
    user_id: uuid.UUID
    subscription_id: uuid.UUID
    plan_name: str

    def email(self, kind: str, subject: str, text: str, payment_id: uuid.UUID | None) -> Email:
        return Email(
            kind=kind,
            to=address_of(self.settings, self.user_id),
            subject=subject,
            text=text.strip() + "\n\n— Cinema\n",
            user_id=str(self.user_id),
            subscription_id=str(self.subscription_id),
            payment_id=str(payment_id) if payment_id else None,
        )


def receipt(
    about: About,
    *,
    payment_id: uuid.UUID,
    amount: int,
    currency: str,
    period_start: datetime,
    period_end: datetime,
    renewal: bool,
    discount_amount: int = 0,
    promo_code: str | None = None,
) -> Email:
    """`amount` is what was charged (the net); with a discount the price before it and the
    discount are shown above it."""
    what = "Your subscription was renewed" if renewal else "Thank you for subscribing"
    discount = ""
    if discount_amount:
        named = f" ({promo_code})" if promo_code else ""
        discount = (
            f"Price: {for_people(amount + discount_amount, currency)}\n"
            f"Discount{named}: -{for_people(discount_amount, currency)}\n"
        )
    return about.email(
        "receipt",
        f"Receipt: {about.plan_name}, {for_people(amount, currency)}",
        f"""
{what}.

Plan: {about.plan_name}
Period: {_day(period_start)} – {_day(period_end)}
{discount}Amount charged: {for_people(amount, currency)}
Payment: {payment_id}
""",
        payment_id,
    )


def refund_receipt(
    about: About, *, payment_id: uuid.UUID, refund_id: uuid.UUID, amount: int, currency: str
) -> Email:
    return about.email(
        "refund_receipt",
        f"Refund: {about.plan_name}, {for_people(amount, currency)}",
        f"""
We refunded {for_people(amount, currency)} for {about.plan_name}.
It reaches your card within a few days.

Payment: {payment_id}
Refund: {refund_id}
""",
        payment_id,
    )


def renewal_failed(
    about: About,
    *,
    payment_id: uuid.UUID,
    amount: int,
    currency: str,
    reason: str,
    card_url: str,
    next_retry_at: datetime | None,
    grace_until: datetime,
) -> Email:
    retry = (
        f"We will try again on {_day(next_retry_at)}."
        if next_retry_at
        else "We will not try this card again."
    )
    return about.email(
        "renewal_failed",
        f"Your {about.plan_name} renewal did not go through",
        f"""
We could not renew {about.plan_name} ({for_people(amount, currency)}): {reason}
{retry} You keep watching until {_day(grace_until)}.

Use another card, and we charge it right away:
{card_url}
""",
        payment_id,
    )


def action_required(
    about: About,
    *,
    payment_id: uuid.UUID,
    amount: int,
    currency: str,
    authenticate_url: str,
    grace_until: datetime,
) -> Email:
    return about.email(
        "action_required",
        f"Confirm your {about.plan_name} renewal",
        f"""
Your bank asks you to confirm the renewal of {about.plan_name}
({for_people(amount, currency)}). You keep watching until {_day(grace_until)}.

Confirm it here:
{authenticate_url}
""",
        payment_id,
    )


def last_warning(
    about: About, *, payment_id: uuid.UUID, card_url: str, grace_until: datetime
) -> Email:
    return about.email(
        "last_warning",
        f"Last reminder: {about.plan_name} ends on {_day(grace_until)}",
        f"""
We could not renew {about.plan_name} and will not try again.
Your access ends on {_day(grace_until)} unless you give another card:
{card_url}
""",
        payment_id,
    )


def subscription_ended(about: About, *, ended_at: datetime, reason: str) -> Email:
    return about.email(
        "subscription_ended",
        f"Your {about.plan_name} subscription has ended",
        f"""
Your {about.plan_name} subscription ended on {_day(ended_at)}: {reason}
You can subscribe again at any time.
""",
        None,
    )
