"""Bodies of the internal payments API (docs/contracts.md)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator


class CreatePaymentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_id: uuid.UUID
    user_id: uuid.UUID
    amount: StrictInt = Field(gt=0, le=99_999_999)  # minor units, Stripe's maximum
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    description: str = Field("", max_length=1000)
    return_url: str | None = Field(None, max_length=2000)

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
