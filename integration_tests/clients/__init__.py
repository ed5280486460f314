"""HTTP clients for the running system: what a user, the payment page, the movie service and a
manager do, spoken only over HTTP (no service code is imported). Used by the integration tests and
by `make demo`."""

from .billing import BillingClient, BillingInternalClient
from .clock import StackClock
from .mail import Mailbox, links_in
from .payment_page import CARD_3DS, CARD_DECLINED_AT_CHARGE, CARD_OK, PaymentPage
from .stack import StackSettings
from .tokens import service_token, user_token

__all__ = [
    "CARD_3DS",
    "CARD_DECLINED_AT_CHARGE",
    "CARD_OK",
    "BillingClient",
    "BillingInternalClient",
    "Mailbox",
    "PaymentPage",
    "StackClock",
    "StackSettings",
    "links_in",
    "service_token",
    "user_token",
]
