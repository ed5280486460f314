"""payments and ledger charges carry gross, discount and net; a free (100%-off) payment is 0

Revision ID: promotions_2
Revises: 0005
Create Date: 2026-11-29 12:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "promotions_2"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("gross_amount", sa.BigInteger(), nullable=True))
    op.add_column(
        "payments",
        sa.Column("discount_amount", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("payments", sa.Column("promo_code", sa.Text(), nullable=True))
    op.execute("UPDATE payments SET gross_amount = amount")
    op.alter_column("payments", "gross_amount", nullable=False)
    # Writers that know nothing of discounts (no gross given): gross = amount + discount.
    op.execute(
        """
        CREATE FUNCTION payments_gross_default() RETURNS trigger AS $$
        BEGIN
            IF NEW.gross_amount IS NULL THEN
                NEW.gross_amount := NEW.amount + COALESCE(NEW.discount_amount, 0);
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER payments_gross_default BEFORE INSERT ON payments "
        "FOR EACH ROW EXECUTE FUNCTION payments_gross_default()"
    )
    op.drop_constraint(op.f("ck_payments_amount_positive"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_amount_not_negative"), "payments", "amount >= 0")
    op.create_check_constraint(
        op.f("ck_payments_net_is_gross_less_discount"),
        "payments",
        "discount_amount >= 0 AND gross_amount - discount_amount = amount",
    )
    op.add_column("ledger_entries", sa.Column("gross_amount", sa.BigInteger(), nullable=True))
    op.add_column("ledger_entries", sa.Column("discount_amount", sa.BigInteger(), nullable=True))
    # Ledger rows are append-only (a trigger refuses UPDATE): old charges keep NULL (no discount).
    op.drop_constraint(op.f("ck_ledger_entries_amount_positive"), "ledger_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_ledger_entries_amount_positive"),
        "ledger_entries",
        "amount > 0 OR (kind = 'charge' AND amount = 0)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_ledger_entries_amount_positive"), "ledger_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_ledger_entries_amount_positive"), "ledger_entries", "amount > 0"
    )
    op.drop_column("ledger_entries", "discount_amount")
    op.drop_column("ledger_entries", "gross_amount")
    op.execute("DROP TRIGGER payments_gross_default ON payments")
    op.execute("DROP FUNCTION payments_gross_default()")
    op.drop_constraint(op.f("ck_payments_net_is_gross_less_discount"), "payments", type_="check")
    op.drop_constraint(op.f("ck_payments_amount_not_negative"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_amount_positive"), "payments", "amount > 0")
    op.drop_column("payments", "promo_code")
    op.drop_column("payments", "discount_amount")
    op.drop_column("payments", "gross_amount")
