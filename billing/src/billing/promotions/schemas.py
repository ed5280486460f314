from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from billing.promotions.pricing import Terms


class DiscountIn(BaseModel):
    """The terms shared by promo codes and personal discounts: percent or amount off."""

    model_config = ConfigDict(extra="forbid")

    percent_off: int | None = Field(None, ge=1, le=100)
    amount_off: int | None = Field(None, gt=0, le=10**12)  # minor units of `currency`
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    all_plans: bool = True
    plan_ids: list[uuid.UUID] = []
    active: bool = True

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        if self.amount_off is not None and self.currency is None:
            raise ValueError("an amount_off needs its currency")
        if self.percent_off is not None:
            self.currency = None
        return self


class PromoCodeIn(DiscountIn):
    """PUT /internal/v1/promo-codes/{id} from etl."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_periods: int | None = Field(None, ge=1, le=1000)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_redemptions: int | None = Field(None, ge=1, le=10**9)
    max_per_user: int | None = Field(None, ge=1, le=10**6)
    first_purchase_only: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if (self.duration == "repeating") != (self.duration_periods is not None):
            raise ValueError("duration_periods is given exactly when duration is repeating")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class PersonalDiscountIn(DiscountIn):
    """PUT /internal/v1/personal-discounts/{id} from etl."""

    user_id: uuid.UUID
    valid_until: datetime | None = None
    note: str = Field("", max_length=1000)


class RenewalPhase(BaseModel):
    """Renewals `from_period`..`until_period` (None: every one after) cost `net` each."""

    from_period: int
    until_period: int | None
    gross: int
    discount: int
    net: int


class PriceOut(BaseModel):
    """What buying a plan costs this user now, and what its renewals will cost."""

    plan_id: uuid.UUID
    currency: str
    gross: int
    discount: int
    net: int
    promo_code: str | None
    discount_source: Literal["promo_code", "personal_discount"] | None
    renewals: list[RenewalPhase]


class RedemptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    promo_code_id: uuid.UUID
    code: str
    user_id: uuid.UUID
    payment_id: uuid.UUID
    subscription_id: uuid.UUID
    status: str
    created_at: datetime
    updated_at: datetime


class RedemptionList(BaseModel):
    promo_code_id: uuid.UUID
    times_redeemed: int
    max_redemptions: int | None
    items: list[RedemptionOut]
    total: int


def terms_of(row) -> Terms:
    """pricing.Terms of a promo code, redemption or personal discount row."""
    return Terms(
        percent_off=row.percent_off,
        amount_off=row.amount_off,
        currency=row.currency,
        duration=getattr(row, "duration", "forever"),
        duration_periods=getattr(row, "duration_periods", None),
    )
