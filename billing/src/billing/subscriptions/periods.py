"""Billing periods: `count` days, or `count` calendar months (Jan 31 + 1 month = Feb 28/29)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, *, unit: str, count: int) -> datetime:
    """The end of a period of `count` `unit`s starting at `start`."""
    if unit == "month":
        return add_months(start, count)
    if unit == "day":
        return start + timedelta(days=count)
    raise ValueError(f"unknown period unit {unit!r}")
