"""subscriptions.status may be 'suspended' (a renewal's grace ran out; the plan is still held)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 12:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "'incomplete', 'incomplete_expired', 'active', 'past_due', 'canceled', 'expired', 'refunded'"
_NEW = (
    "'incomplete', 'incomplete_expired', 'active', 'past_due', 'suspended', 'canceled', "
    "'expired', 'refunded'"
)
_OLD_LIVE = "'incomplete', 'active', 'past_due', 'canceled'"
_NEW_LIVE = "'incomplete', 'active', 'past_due', 'canceled', 'suspended'"


def _set(statuses: str, live: str) -> None:
    op.drop_constraint(op.f("ck_subscriptions_status"), "subscriptions", type_="check")
    op.create_check_constraint(
        op.f("ck_subscriptions_status"), "subscriptions", f"status IN ({statuses})"
    )
    op.drop_index("uq_subscriptions_live_user_plan", table_name="subscriptions")
    op.create_index(
        "uq_subscriptions_live_user_plan",
        "subscriptions",
        ["user_id", "plan_id"],
        unique=True,
        postgresql_where=sa.text(f"status IN ({live})"),
    )


def upgrade() -> None:
    _set(_NEW, _NEW_LIVE)


def downgrade() -> None:
    op.execute("UPDATE subscriptions SET status = 'expired' WHERE status = 'suspended'")
    _set(_OLD, _OLD_LIVE)
