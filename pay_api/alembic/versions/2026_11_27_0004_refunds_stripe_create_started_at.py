"""refunds.stripe_create_started_at: when pay_api last started creating the refund at Stripe

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "refunds", sa.Column("stripe_create_started_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("refunds", "stripe_create_started_at")
