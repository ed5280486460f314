"""Every table of billing, imported in one place (for Alembic and for readers)."""

from billing.db import Base
from billing.idempotency import IdempotencyKey
from billing.outbox import OutboxMessage
from billing.payments.models import LedgerEntry, Payment, ProcessedEvent, Refund
from billing.plans.models import Film, Plan, PlanFilm
from billing.promotions.models import (
    PersonalDiscount,
    PersonalDiscountPlan,
    PromoCode,
    PromoCodePlan,
    PromoCodeUser,
    Redemption,
)
from billing.subscriptions.models import Subscription

metadata = Base.metadata

__all__ = [
    "Film",
    "IdempotencyKey",
    "LedgerEntry",
    "OutboxMessage",
    "Payment",
    "PersonalDiscount",
    "PersonalDiscountPlan",
    "Plan",
    "PlanFilm",
    "PromoCode",
    "PromoCodePlan",
    "PromoCodeUser",
    "Redemption",
    "ProcessedEvent",
    "Refund",
    "Subscription",
    "metadata",
]
