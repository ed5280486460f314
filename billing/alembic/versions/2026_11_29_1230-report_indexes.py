"""indexes for the admin's reports: periods read by time (ledger, payments, subscriptions, refunds)

Revision ID: reports_1
Revises: pruning_1
Create Date: 2026-11-29 12:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "reports_1"
down_revision: str | None = "pruning_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, column, only rows where the column is set)
INDEXES = (
    ("ix_ledger_entries_created_at", "ledger_entries", "created_at", False),
    ("ix_payments_created_at", "payments", "created_at", False),
    ("ix_payments_succeeded_at", "payments", "succeeded_at", True),
    ("ix_payments_period_end", "payments", "period_end", True),
    ("ix_subscriptions_ended_at", "subscriptions", "ended_at", True),
    ("ix_refunds_created_at", "refunds", "created_at", False),
)


def upgrade() -> None:
    for name, table, column, partial in INDEXES:
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        op.create_index(name, table, [column], postgresql_where=where)


def downgrade() -> None:
    for name, table, _column, _partial in reversed(INDEXES):
        op.drop_index(name, table_name=table)
