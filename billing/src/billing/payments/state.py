"""The payment state machine: which status may follow which. Pure, no I/O.

    created → pending → processing → succeeded | failed | canceled | expired
    succeeded → partially_refunded → refunded          (driven by refunds)
    unknown: the gateway's answer to a state-changing call was lost (billing's cancel, or pay_api's
             confirmation at Stripe, which pay_api reports as `unknown`); only the reconciler
             leaves it.

Moves go up the rank table only, so a late or repeated event never moves a payment backwards.
One move down is real and allowed: `processing → pending`, when the attempt failed asynchronously
at Stripe (or needs confirming again) and the user may pay again — but only on news newer than what
moved it to `processing` (an event pay_api wrote later, or an answer billing asked for later).
`succeeded` ranks above the unpaid finals on purpose: if Stripe charged after we gave up
(a cancel that lost the race), the money was taken and billing must say so.
The only downward moves are explicit: a failed refund restores `refunded → succeeded/partially`.
"""

from __future__ import annotations

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
