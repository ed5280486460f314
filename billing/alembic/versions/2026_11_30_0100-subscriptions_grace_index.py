"""past-due subscriptions found by the end of their grace (each worker pass asks which ran out)

Revision ID: renewals_3
Revises: promotions_2
Create Date: 2026-11-30 01:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "renewals_3"
down_revision: str | None = "promotions_2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_subscriptions_grace_past_due",
        "subscriptions",
        ["grace_until"],
        postgresql_where=sa.text("status = 'past_due'"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscriptions_grace_past_due", table_name="subscriptions")
