"""payments.processing_reported_at: how recent the news was that made a payment processing

Only newer news may send a processing payment back to pending (an asynchronous failure at Stripe).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "payments",
        sa.Column("processing_reported_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("payments", "processing_reported_at")
