from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from billing.money import MAX_AMOUNT


class UserRefundIn(BaseModel):
    """Body of POST /api/v1/payments/{id}/refund (optional): the user's reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("requested_by_customer", max_length=500)


class AdminRefundIn(BaseModel):
    """Body of POST /internal/v1/payments/{id}/refunds from the admin panel."""

    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(
        None, gt=0, le=MAX_AMOUNT, description="Minor units; omitted = all that is left"
    )
    reason: str = Field("", max_length=500)
    end_subscription: bool = False
