from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

Granularity = Literal["day", "week", "month"]


class Figures(BaseModel):
    """The dashboard's figures for one period and one currency (docs/contracts.md, "Reports")."""

    currency: str
    gross: int
    refunds: int
    net: int
    refund_rate: float | None
    new_subscribers: int
    churned_subscribers: int
    failed_payments: int
    renewals: int
    failed_renewals: int
    active_subscribers: int
    mrr: int


class PeriodFigures(Figures):
    period_start: date
    period_end: date  # exclusive


class Summary(BaseModel):
    granularity: Granularity
    date_from: date
    date_to: date  # inclusive
    as_of: datetime  # active subscribers and MRR of the totals are measured at this instant
    currencies: list[str]
    series: list[PeriodFigures]
    totals: list[Figures]


class CustomerMatch(BaseModel):
    user_id: uuid.UUID
    via: str  # what the query matched: user_id, payment_id, refund_id, subscription_id, ...
    payment_id: uuid.UUID | None = None


class CustomerSearch(BaseModel):
    query: str
    matches: list[CustomerMatch]


class TimelineItem(BaseModel):
    at: datetime
    kind: str  # e.g. subscription_created, payment_succeeded, refund_requested (contracts.md)
    title: str
    status: str | None = None
    amount: int | None = None
    currency: str | None = None
    subscription_id: uuid.UUID | None = None
    payment_id: uuid.UUID | None = None
    refund_id: uuid.UUID | None = None


class Timeline(BaseModel):
    user_id: uuid.UUID
    items: list[TimelineItem]
