"""indexes for pruning by age: Stripe event ids, delivered outbox rows

Revision ID: pruning_1
Revises: 0006
Create Date: 2026-11-29 12:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pruning_1"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_stripe_events_received_at", "stripe_events", ["received_at"])
    op.create_index(
        "ix_outbox_delivered_at",
        "outbox",
        ["delivered_at"],
        postgresql_where=sa.text("delivered_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_delivered_at", table_name="outbox")
    op.drop_index("ix_stripe_events_received_at", table_name="stripe_events")
