from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.money import MAX_AMOUNT


class Money(BaseModel):
    amount: int  # minor units
    currency: str


class Period(BaseModel):
    unit: Literal["month", "day"]
    count: int


class PlanOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    price: Money
    period: Period
    refund_window_days: int
    all_films: bool
    film_ids: list[uuid.UUID]


class PlanList(BaseModel):
    items: list[PlanOut]
    total: int


class FilmIn(BaseModel):
    """PUT /internal/v1/films/{id} from etl."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    active: bool = True


class PlanIn(BaseModel):
    """PUT /internal/v1/plans/{id} from etl."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    price_amount: int = Field(gt=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    period_unit: Literal["month", "day"]
    period_count: int = Field(gt=0, le=1000)
    refund_window_days: int = Field(ge=0, le=3650)
    active: bool = True
    all_films: bool = False
    film_ids: list[uuid.UUID] = []

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class UpsertResult(BaseModel):
    id: uuid.UUID
    changed: bool
