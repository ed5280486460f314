"""The SetupIntents the payment page saves cards with, one row per SetupIntent we made.

A payment makes at most `PAY_API_SETUP_INTENTS_MAX` of them (`409 setup_intent_limit` after):
an untouched one (no card given yet, no failed attempt) is handed out again instead of a new
one, so reloading the page or a flood of calls makes no new objects at Stripe. `/charge` accepts
only a SetupIntent made for its payment, known without asking Stripe.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pay_api.db import Base, utcnow
from pay_api.errors import SetupIntentLimit
from pay_api.gateway import Gateway
from pay_api.payments.models import Payment


class CardSetup(Base):
    __tablename__ = "card_setups"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's seti_...
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def open_setup_intent(
    session: Session, gateway: Gateway, *, payment: Payment, customer_id: str, limit: int
) -> str:
    """The client secret of a SetupIntent for this payment (caller holds the payment's row lock):
    the latest one if still untouched, else a new one within the limit."""
    latest = session.scalar(
        select(CardSetup)
        .where(CardSetup.payment_id == payment.id)
        .order_by(CardSetup.created_at.desc())
        .limit(1)
    )
    if latest is not None:
        setup = gateway.retrieve_setup_intent(latest.id)
        if setup.untouched and setup.client_secret:
            return setup.client_secret
    made = session.scalar(
        select(func.count()).select_from(CardSetup).where(CardSetup.payment_id == payment.id)
    )
    if made >= limit:
        raise SetupIntentLimit()
    setup_intent_id, client_secret = gateway.create_setup_intent(
        customer_id=customer_id, payment_id=str(payment.id)
    )
    session.add(CardSetup(id=setup_intent_id, payment_id=payment.id))
    return client_secret


def made_for(session: Session, *, payment_id: uuid.UUID, setup_intent_id: str) -> bool:
    """Whether we made this SetupIntent for this payment."""
    setup = session.get(CardSetup, setup_intent_id)
    return setup is not None and setup.payment_id == payment_id
