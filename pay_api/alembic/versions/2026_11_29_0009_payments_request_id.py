"""payments.request_id: the request id of billing's call that registered the payment

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 12:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("request_id", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "request_id")
