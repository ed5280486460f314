"""Every table of billing, mapped in one place (for Alembic, for the worker, and for readers):
importing a module that declares tables maps them on `Base.metadata`. A new module of tables is
one more import here."""

import billing.idempotency  # noqa: F401 - idempotency_keys
import billing.outbox  # noqa: F401 - outbox
import billing.payments.models  # noqa: F401 - payments, refunds, ledger_entries, processed_events
import billing.plans.models  # noqa: F401 - films, plans, plan_films
import billing.promotions.models  # noqa: F401 - promo codes, personal discounts, redemptions
import billing.subscriptions.models  # noqa: F401 - subscriptions
from billing.db import Base

metadata = Base.metadata

__all__ = ["metadata"]
