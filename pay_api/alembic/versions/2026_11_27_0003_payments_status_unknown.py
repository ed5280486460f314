"""payments.status may be `unknown`: Stripe's answer to a confirmation was lost

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 02:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_UNKNOWN = "status IN ('pending', 'processing', 'unknown', 'succeeded', 'canceled', 'failed')"
WITHOUT_UNKNOWN = "status IN ('pending', 'processing', 'succeeded', 'canceled', 'failed')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_payments_status_known"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_status_known"), "payments", WITH_UNKNOWN)


def downgrade() -> None:
    # Before `unknown` existed a lost answer left the payment pending (the reconciler's refresh
    # settles it either way).
    op.execute("UPDATE payments SET status = 'pending' WHERE status = 'unknown'")
    op.drop_constraint(op.f("ck_payments_status_known"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_status_known"), "payments", WITHOUT_UNKNOWN)
