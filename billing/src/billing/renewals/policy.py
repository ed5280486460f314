"""The renewal rules, pure (no I/O): when to charge, when to retry, how long grace lasts, and what
pay_api's answer to an attempt means. Settings give the numbers (billing/config.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from billing.config import Settings

AUTHENTICATION_REQUIRED = "authentication_required"
NO_SAVED_CARD = "no_saved_card"


class Outcome(StrEnum):
    """What one attempt came to."""

    PAID = "paid"  # succeeded
    IN_FLIGHT = "in_flight"  # processing/unknown: money may be moving; the reconciler settles it
    AUTHENTICATION = "authentication"  # the bank wants the cardholder: an emailed link, no retry
    HARD_DECLINE = "hard_decline"  # no retry until the user gives another card
    SOFT_DECLINE = "soft_decline"  # retried on the schedule
    CLOSED = "closed"  # the payment ended unpaid (canceled/failed/expired)


# How an attempt's outcome reads in `billing_renewal_attempts_total{outcome}` (billing.metrics).
OUTCOME_LABELS = {
    Outcome.PAID: "succeeded",
    Outcome.IN_FLIGHT: "in_flight",
    Outcome.AUTHENTICATION: "authentication_required",
    Outcome.HARD_DECLINE: "hard_decline",
    Outcome.SOFT_DECLINE: "declined",
    Outcome.CLOSED: "closed",
}


@dataclass(frozen=True)
class RenewalPolicy:
    lead: timedelta
    retries: tuple[timedelta, ...]  # after the period's end
    grace: timedelta
    hard_declines: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> RenewalPolicy:
        return cls(
            lead=timedelta(seconds=settings.renewal_lead_seconds),
            retries=tuple(timedelta(days=d) for d in settings.renewal_retry_offsets),
            grace=timedelta(days=settings.renewal_grace_days),
            hard_declines=settings.renewal_hard_decline_set,
        )

    def due_at(self, period_end: datetime) -> datetime:
        """When the renewal of a period ending at `period_end` is first charged."""
        return period_end - self.lead

    def grace_until(self, period_end: datetime) -> datetime:
        return period_end + self.grace

    def next_retry_at(
        self, period_end: datetime, *, attempts_done: int, now: datetime
    ) -> datetime | None:
        """After `attempts_done` attempts (the first is not a retry), when the next one runs;
        None when the schedule is over. A retry the worker is late for runs now."""
        index = attempts_done - 1
        if index < 0 or index >= len(self.retries):
            return None
        return max(period_end + self.retries[index], now)

    def is_last_attempt(self, attempts_done: int) -> bool:
        return attempts_done - 1 >= len(self.retries)

    def outcome(self, status: str, failure_code: str | None) -> Outcome:
        """pay_api's answer to an attempt (its payment status and failure code)."""
        if status == "succeeded":
            return Outcome.PAID
        if status in ("processing", "unknown"):
            return Outcome.IN_FLIGHT
        if status != "pending":
            return Outcome.CLOSED
        if failure_code == AUTHENTICATION_REQUIRED:
            return Outcome.AUTHENTICATION
        if failure_code in self.hard_declines:
            return Outcome.HARD_DECLINE
        return Outcome.SOFT_DECLINE
