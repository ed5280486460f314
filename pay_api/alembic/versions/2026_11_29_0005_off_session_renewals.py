"""renewals: the customer's saved card, and the off-session attempt billing last asked for

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "customers", sa.Column("default_payment_method_id", sa.String(255), nullable=True)
    )
    op.add_column(
        "payments",
        sa.Column("off_session_attempt", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("payments", "off_session_attempt")
    op.drop_column("customers", "default_payment_method_id")
