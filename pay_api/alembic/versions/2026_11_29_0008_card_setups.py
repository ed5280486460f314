"""card_setups: the SetupIntents made for each payment (a cap, reuse, /charge checks them)

Revision ID: 0008
Revises: pruning_1
Create Date: 2026-11-29 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "pruning_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_setups",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_card_setups_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_setups")),
    )
    op.create_index(op.f("ix_card_setups_payment_id"), "card_setups", ["payment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_card_setups_payment_id"), table_name="card_setups")
    op.drop_table("card_setups")
