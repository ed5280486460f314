from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: str
    reason: str
    created_at: datetime


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    subscription_id: uuid.UUID
    plan_id: uuid.UUID
    status: str
    amount: int  # the net: what is (or was) charged
    gross_amount: int  # the plan's price before discounts
    discount_amount: int
    promo_code: str | None
    currency: str
    refunded_amount: int
    payment_url: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    refunds: list[RefundOut] = []


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    total: int
    limit: int
    offset: int


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    amount: int
    currency: str
    gross_amount: int | None = None  # charges: before the discount
    discount_amount: int | None = None
    refund_id: uuid.UUID | None
    created_at: datetime


class AdminPaymentOut(PaymentOut):
    user_id: uuid.UUID
    kind: str  # first | renewal
    # The paid period (a first payment's once it succeeded; a renewal's from when it is written).
    period_start: datetime | None
    period_end: datetime | None
    stripe_payment_intent_id: str | None
    expires_at: datetime
    succeeded_at: datetime | None
    charge_attempts: int  # a renewal's off-session attempts so far (each confirmed at most once)


class AdminPaymentDetail(AdminPaymentOut):
    """One payment for a manager or an auditor: with every ledger row it caused."""

    ledger: list[LedgerEntryOut] = []
