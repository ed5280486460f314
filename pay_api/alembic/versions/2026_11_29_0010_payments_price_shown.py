"""payments: the price before a discount, the discount and its code, for the payment page

Revision ID: promotions_page_1
Revises: 0009
Create Date: 2026-11-29 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "promotions_page_1"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("gross_amount", sa.BigInteger(), nullable=True))
    op.add_column(
        "payments",
        sa.Column("discount_amount", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("payments", sa.Column("promo_code", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "promo_code")
    op.drop_column("payments", "discount_amount")
    op.drop_column("payments", "gross_amount")
