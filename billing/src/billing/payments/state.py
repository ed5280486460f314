"""The payment state machine: which status may follow which, and the ONE place a payment's status
is written (`move`, `settle_refunds`). Pure, no I/O: callers lock the payment row first.

    created → pending → processing → succeeded | failed | canceled | expired
    succeeded → partially_refunded → refunded          (driven by refunds)
    unknown: the gateway's answer to a state-changing call was lost (billing's cancel, or pay_api's
             confirmation at Stripe, which pay_api reports as `unknown`); only the reconciler
             leaves it.

Moves go up the rank table, so a late or repeated event never moves a payment backwards.
`succeeded` ranks above the unpaid finals on purpose: if Stripe charged after we gave up
(a cancel that lost the race), the money was taken and billing must say so.

Three moves go down, each explicit:
* `processing → pending`, when the attempt failed asynchronously at Stripe (or needs confirming
  again) and the user may pay again — only on news newer than what moved it to `processing` (an
  event pay_api wrote later, or an answer billing asked for later);
* out of `unknown`, to whatever Stripe says — only by the reconciler;
* a refund that failed (or a bank returned) restores `refunded → partially_refunded | succeeded`
  (`settle_refunds`: the status follows the total of succeeded refunds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

PAYMENT_STATUSES = (
    "created",
    "pending",
    "processing",
    "unknown",
    "succeeded",
    "failed",
    "canceled",
    "expired",
    "partially_refunded",
    "refunded",
)
# Not final: someone (user, pay_api, the worker) still has to move it.
OPEN_PAYMENT_STATUSES = ("created", "pending", "processing", "unknown")
UNPAID_FINAL_STATUSES = ("failed", "canceled", "expired")
PAID_STATUSES = ("succeeded", "partially_refunded", "refunded")
REFUNDABLE_STATUSES = ("succeeded", "partially_refunded")
# Statuses pay_api reports for a payment (`unknown`: Stripe's answer to its confirmation was lost).
GATEWAY_PAYMENT_STATUSES = ("pending", "processing", "unknown", "succeeded", "failed", "canceled")

RANK = {
    "created": 0,
    "pending": 1,
    "processing": 2,
    "failed": 3,
    "canceled": 3,
    "expired": 3,
    "succeeded": 4,
    "partially_refunded": 5,
    "refunded": 6,
}


def may_move(
    current: str, new: str, *, by_reconciler: bool = False, newer_news: bool = False
) -> bool:
    """Whether a payment in `current` may move to `new`.

    `newer_news`: the report is known to be newer than the one that made it `processing`."""
    if current == new:
        return False
    if current == "processing" and new == "pending":
        return newer_news
    if current == "unknown":
        return by_reconciler and new != "created"
    if new == "unknown":
        return current in ("created", "pending", "processing")
    return RANK[new] > RANK[current]


class _Payment(Protocol):
    status: str
    updated_at: datetime


def move(
    payment: _Payment,
    new: str,
    *,
    now: datetime,
    by_reconciler: bool = False,
    newer_news: bool = False,
) -> bool:
    """Move a (locked) payment to `new` if `may_move` allows it; True if it moved."""
    if not may_move(payment.status, new, by_reconciler=by_reconciler, newer_news=newer_news):
        return False
    payment.status = new
    payment.updated_at = now
    return True


def settle_refunds(
    payment: _Payment, *, amount: int, refunded_succeeded: int, now: datetime
) -> bool:
    """A charged payment's status from the total of its succeeded refunds (up, or back down when a
    refund failed); True if it changed."""
    if payment.status not in PAID_STATUSES:
        return False
    new = status_after_refunds(amount=amount, refunded_succeeded=refunded_succeeded)
    changed = new != payment.status
    payment.status = new
    payment.updated_at = now
    return changed


def status_after_refunds(*, amount: int, refunded_succeeded: int) -> str:
    """A charged payment's status from the total of its succeeded refunds."""
    if refunded_succeeded <= 0:
        return "succeeded"
    if refunded_succeeded >= amount:
        return "refunded"
    return "partially_refunded"


REFUND_RANK = {"pending": 0, "succeeded": 1, "failed": 2, "canceled": 2}


def refund_may_move(current: str, new: str) -> bool:
    """Refunds: pending → succeeded → failed (a bank can return a refund later), never back."""
    return current != new and REFUND_RANK[new] > REFUND_RANK[current]
