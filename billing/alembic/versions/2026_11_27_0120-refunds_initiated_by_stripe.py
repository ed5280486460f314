"""refunds.initiated_by may be 'stripe': refunds made outside billing (Stripe's Dashboard)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:20:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_refunds_initiated_by"), "refunds", type_="check")
    op.create_check_constraint(
        op.f("ck_refunds_initiated_by"), "refunds", "initiated_by IN ('user', 'admin', 'stripe')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_refunds_initiated_by"), "refunds", type_="check")
    op.create_check_constraint(
        op.f("ck_refunds_initiated_by"), "refunds", "initiated_by IN ('user', 'admin')"
    )
