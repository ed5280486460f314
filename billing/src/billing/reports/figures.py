"""The dashboard's figures, computed from billing's own rows (docs/contracts.md, "Reports").

Periods are UTC calendar days, ISO weeks (Monday first) or calendar months. Money figures come
from the append-only ledger, so they equal what moved, not what was asked:

* gross — `charge` ledger rows written in the period (money taken);
* refunds — `refund` rows minus `reversal` rows (refunds that failed after being booked);
* net — gross − refunds; refund rate — refunds / gross (none when gross is 0);
* new subscribers — subscriptions whose first payment succeeded in the period;
* churned subscribers — subscriptions that ended (expired or refunded) in the period;
* failed payments / failed renewals — first / renewal payments created in the period that ended
  without money after a decline (`failed`, or `expired`/`canceled` with a failure code);
* renewals — renewal payments that succeeded in the period;
* active subscribers — distinct users holding a paid period that covers the period's end (or
  now, for the current period), on a subscription not ended by then;
* MRR — for those paid periods on subscriptions still set to renew, the amount paid brought to a
  30-day month (month plans: amount / months; day plans: amount × 30 / days), summed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import Unprocessable
from billing.reports.schemas import Figures, Granularity, PeriodFigures, Summary

MAX_PERIODS = 400

FLOW_FIELDS = (
    "gross",
    "refunds",
    "new_subscribers",
    "churned_subscribers",
    "failed_payments",
    "renewals",
    "failed_renewals",
)

# Each query buckets by date_trunc(:granularity, <time> AT TIME ZONE 'UTC'): UTC periods.

_MONEY = """
SELECT (date_trunc(:granularity, created_at AT TIME ZONE 'UTC'))::date AS bucket, currency,
       sum(amount) FILTER (WHERE kind = 'charge') AS gross,
       coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0)
         - coalesce(sum(amount) FILTER (WHERE kind = 'reversal'), 0) AS refunds
FROM ledger_entries
WHERE created_at >= :start AND created_at < :end
GROUP BY 1, 2
"""

_FAILURES = """
SELECT (date_trunc(:granularity, created_at AT TIME ZONE 'UTC'))::date AS bucket, currency,
       count(*) FILTER (WHERE kind = 'first') AS failed_payments,
       count(*) FILTER (WHERE kind = 'renewal') AS failed_renewals
FROM payments
WHERE created_at >= :start AND created_at < :end
  AND (status = 'failed' OR (status IN ('expired', 'canceled') AND failure_code IS NOT NULL))
GROUP BY 1, 2
"""

_SUCCESSES = """
SELECT (date_trunc(:granularity, succeeded_at AT TIME ZONE 'UTC'))::date AS bucket, currency,
       count(DISTINCT subscription_id) FILTER (WHERE kind = 'first') AS new_subscribers,
       count(*) FILTER (WHERE kind = 'renewal') AS renewals
FROM payments
WHERE succeeded_at >= :start AND succeeded_at < :end
GROUP BY 1, 2
"""

_CHURN = """
SELECT (date_trunc(:granularity, s.ended_at AT TIME ZONE 'UTC'))::date AS bucket, first.currency,
       count(*) AS churned_subscribers
FROM subscriptions s
JOIN LATERAL (
    SELECT currency FROM payments p WHERE p.subscription_id = s.id
    ORDER BY p.created_at LIMIT 1
) first ON true
WHERE s.status IN ('expired', 'refunded') AND s.ended_at >= :start AND s.ended_at < :end
GROUP BY 1, 2
"""

# One row per (instant, currency): who holds a paid period covering that instant.
_HOLDERS = """
SELECT t.at, p.currency,
       count(DISTINCT p.user_id) AS active_subscribers,
       coalesce(round(sum(
           CASE s.period_unit WHEN 'month' THEN p.amount::numeric / s.period_count
                ELSE p.amount::numeric * 30 / s.period_count END
       ) FILTER (WHERE s.canceled_at IS NULL OR s.canceled_at > t.at)), 0)::bigint AS mrr
FROM unnest(CAST(:instants AS timestamptz[])) AS t(at)
JOIN payments p
  ON p.period_start <= t.at AND p.period_end > t.at
 AND p.status IN ('succeeded', 'partially_refunded', 'refunded')
 AND p.period_end > :first_instant
JOIN subscriptions s ON s.id = p.subscription_id
WHERE s.ended_at IS NULL OR s.ended_at > t.at
GROUP BY 1, 2
"""


def period_start(day: date, granularity: Granularity) -> date:
    """The first day of the period holding `day`."""
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def next_period(start: date, granularity: Granularity) -> date:
    if granularity == "week":
        return start + timedelta(days=7)
    if granularity == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def periods(*, date_from: date, date_to: date, granularity: Granularity) -> list[date]:
    """Starts of the periods covering [date_from, date_to]; 422 when there are too many."""
    if date_to < date_from:
        raise Unprocessable("date_to is before date_from.")
    starts, start = [], period_start(date_from, granularity)
    while start <= date_to:
        starts.append(start)
        if len(starts) > MAX_PERIODS:
            raise _TooLarge()
        start = next_period(start, granularity)
    return starts


class _TooLarge(Unprocessable):
    code = "report_range_too_large"
    message = f"At most {MAX_PERIODS} periods per report: choose a wider granularity."


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def summary(
    *,
    session: AsyncSession,
    date_from: date,
    date_to: date,
    granularity: Granularity,
    now: datetime,
) -> Summary:
    """Every figure per period and currency over [date_from, date_to], and totals."""
    starts = periods(date_from=date_from, date_to=date_to, granularity=granularity)
    ends = [next_period(s, granularity) for s in starts]
    params = {"granularity": granularity, "start": _midnight(starts[0]), "end": _midnight(ends[-1])}

    flows: dict[tuple[date, str], dict[str, int]] = defaultdict(dict)
    for sql in (_MONEY, _FAILURES, _SUCCESSES, _CHURN):
        for row in (await session.execute(text(sql), params)).mappings():
            values = flows[(row["bucket"], row["currency"])]
            for field in FLOW_FIELDS:
                if field in row:
                    values[field] = int(row[field] or 0)

    as_of = min(_midnight(ends[-1]), now)
    instants = sorted({min(_midnight(end), now) for end in ends} | {as_of})
    holders: dict[tuple[datetime, str], tuple[int, int]] = {}
    holding = {"instants": instants, "first_instant": instants[0]}  # ix_payments_period_end
    for row in (await session.execute(text(_HOLDERS), holding)).mappings():
        holders[(row["at"], row["currency"])] = (int(row["active_subscribers"]), int(row["mrr"]))

    currencies = sorted({c for _, c in flows} | {c for _, c in holders})
    series = [
        PeriodFigures(
            period_start=start,
            period_end=end,
            **_figures(
                currency,
                flows.get((start, currency), {}),
                holders.get((min(_midnight(end), now), currency), (0, 0)),
            ),
        )
        for start, end in zip(starts, ends, strict=True)
        for currency in currencies
    ]
    totals = []
    for currency in currencies:
        summed = {
            f: sum(flows.get((s, currency), {}).get(f, 0) for s in starts) for f in FLOW_FIELDS
        }
        totals.append(Figures(**_figures(currency, summed, holders.get((as_of, currency), (0, 0)))))
    return Summary(
        granularity=granularity,
        date_from=date_from,
        date_to=date_to,
        as_of=as_of,
        currencies=currencies,
        series=series,
        totals=totals,
    )


def _figures(currency: str, flow: dict[str, int], holding: tuple[int, int]) -> dict:
    values = {field: flow.get(field, 0) for field in FLOW_FIELDS}
    gross, refunds = values["gross"], values["refunds"]
    return {
        "currency": currency,
        **values,
        "net": gross - refunds,
        "refund_rate": round(refunds / gross, 4) if gross else None,
        "active_subscribers": holding[0],
        "mrr": holding[1],
    }
