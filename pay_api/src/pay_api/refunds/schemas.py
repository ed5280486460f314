"""Bodies of the internal refunds API."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class CreateRefundIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refund_id: uuid.UUID
    payment_id: uuid.UUID
    amount: StrictInt = Field(gt=0)
    reason: str | None = Field(None, max_length=500)
