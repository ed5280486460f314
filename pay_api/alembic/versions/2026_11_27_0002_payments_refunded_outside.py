"""payments.refunded_outside: the part of Stripe's refunded total made outside pay_api

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:30:00.000000
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
        sa.Column("refunded_outside", sa.BigInteger(), server_default="0", nullable=False),
    )
    # What was counted beyond our succeeded refunds so far came from Stripe's totals.
    op.execute(
        """
        UPDATE payments p SET refunded_outside = greatest(0, p.amount_refunded - coalesce(
            (SELECT sum(r.amount) FROM refunds r
             WHERE r.payment_id = p.id AND r.status = 'succeeded'), 0))
        """
    )


def downgrade() -> None:
    op.drop_column("payments", "refunded_outside")
