"""A promo redemption's states. Pure, no I/O.

    reserved → confirmed     the payment succeeded (a later refund does not give the use back)
    reserved → released      the payment failed, expired or was canceled: the use returns
    released → confirmed     Stripe charged after all (a cancel that lost the race): the use is
                             taken again, even past the code's limit — the discount was given

`confirmed` is final. A use is counted (in the code's and the user's counters) while it is
`reserved` or `confirmed`; only the move to `released` gives it back, and that move is taken once
(under the payment's and the redemption's row locks), so a use is never returned twice.
"""

from __future__ import annotations

from billing.payments.state import PAID_STATUSES, UNPAID_FINAL_STATUSES

STATUSES = ("reserved", "confirmed", "released")
FINAL = ("confirmed", "released")


def may_move(current: str, new: str) -> bool:
    return (current == "reserved" and new in FINAL) or (current, new) == ("released", "confirmed")


def status_for_payment(payment_status: str) -> str | None:
    """What a payment's status means for its redemption (None: nothing yet)."""
    if payment_status in PAID_STATUSES:
        return "confirmed"
    if payment_status in UNPAID_FINAL_STATUSES:
        return "released"
    return None
