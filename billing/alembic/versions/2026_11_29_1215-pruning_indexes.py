"""indexes for pruning by age: idempotency keys, processed events, delivered outbox rows

Revision ID: pruning_1
Revises: promotions_1
Create Date: 2026-11-29 12:15:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pruning_1"
down_revision: str | None = "promotions_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_index("ix_processed_events_received_at", "processed_events", ["received_at"])
    op.create_index(
        "ix_outbox_delivered_at",
        "outbox",
        ["delivered_at"],
        postgresql_where=sa.text("delivered_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_delivered_at", table_name="outbox")
    op.drop_index("ix_processed_events_received_at", table_name="processed_events")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
