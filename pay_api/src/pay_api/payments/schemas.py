"""Bodies of the internal payments API (docs/contracts.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator


@dataclass(frozen=True)
class PriceShown:
    """What the page shows above the total: the price, the discount and its code."""

    gross_amount: int
    discount_amount: int = 0
    promo_code: str | None = None


class CreatePaymentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_id: uuid.UUID
    user_id: uuid.UUID
    amount: StrictInt = Field(gt=0, le=99_999_999)  # minor units, Stripe's maximum
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    description: str = Field("", max_length=1000)
    return_url: str | None = Field(None, max_length=2000)
    # Shown on the page: the price before a discount, the discount and the code behind it.
    gross_amount: StrictInt | None = Field(None, gt=0, le=10**12)
    discount_amount: StrictInt = Field(0, ge=0, le=10**12)
    promo_code: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _net_is_gross_less_discount(self):
        if self.gross_amount is None:
            self.gross_amount = self.amount + self.discount_amount
        if self.gross_amount - self.discount_amount != self.amount:
            raise ValueError("gross_amount - discount_amount must equal amount")
        return self

    def price_shown(self) -> PriceShown:
        return PriceShown(self.gross_amount, self.discount_amount, self.promo_code)

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("return_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("return_url must be an http(s) URL")
        return value or None


class ChargeIn(BaseModel):
    setup_intent_id: str = Field(pattern=r"^seti_[A-Za-z0-9_]+$", max_length=255)


class OffSessionChargeIn(BaseModel):
    """billing's attempt number for this renewal payment (each is confirmed at most once)."""

    attempt: StrictInt = Field(ge=1, le=1000)


# The most renewals billing may send in one batch (docs/contracts.md).
MAX_RENEWAL_BATCH = 100


class RenewalChargeIn(CreatePaymentIn):
    """One renewal of a batch: the payment as `POST /payments` registers it, and the attempt."""

    attempt: StrictInt = Field(ge=1, le=1000)


class RenewalChargesIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    charges: list[RenewalChargeIn] = Field(min_length=1, max_length=MAX_RENEWAL_BATCH)

    @field_validator("charges")
    @classmethod
    def _each_payment_once(cls, value: list[RenewalChargeIn]) -> list[RenewalChargeIn]:
        if len({c.payment_id for c in value}) != len(value):
            raise ValueError("each payment_id may appear once in a batch")
        return value
