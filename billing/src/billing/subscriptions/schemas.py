from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing.payments.schemas import PaymentOut, RefundOut
from billing.plans.schemas import Money


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: uuid.UUID
    promo_code: str | None = Field(None, max_length=64)


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    plan_id: uuid.UUID
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    auto_renew: bool
    # past_due: access lasts until then (a renewal did not go through).
    grace_until: datetime | None = None
    created_at: datetime


class RenewalState(BaseModel):
    """The current period's renewal: when it is (or was) charged, its payment, the next retry."""

    next_renewal_at: datetime | None
    payment_id: uuid.UUID | None
    payment_status: str | None
    attempts: int
    next_retry_at: datetime | None


class AdminSubscriptionOut(SubscriptionOut):
    user_id: uuid.UUID
    needs_attention: bool
    attention_note: str | None
    canceled_at: datetime | None
    ended_at: datetime | None
    past_due_since: datetime | None = None
    last_decline_code: str | None = None
    last_decline_message: str | None = None
    # The renewal state a manager sees (filled from the renewal payment, see internal/admin.py).
    renewal: RenewalState | None = None


class PurchaseOut(BaseModel):
    subscription: SubscriptionOut
    payment: PaymentOut


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]
    total: int


class CancelOut(BaseModel):
    """What canceling did: `refunded` (within the refund window: the money comes back, access
    ends now) or `canceled` (no renewal; access until `access_until`)."""

    action: Literal["refunded", "canceled"]
    subscription: SubscriptionOut
    refund: RefundOut | None = None
    refund_amount: Money | None = None
    access_until: datetime | None = None
    message: str


class CardLinkOut(BaseModel):
    """Where the user gives another card: the renewal in dunning's own page when there is one
    (`pays_renewal`: the card pays it at once), else the card-update page (next renewals)."""

    url: str
    expires_at: datetime
    pays_renewal: bool
