"""renewals: one renewal payment per (subscription, period start); dunning state

Revision ID: 0005
Revises: reports_1
Create Date: 2026-11-29 13:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "reports_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The renewal schedule of a payment: when the worker charges it next (NULL: it waits for the
    # user — a new card or 3-D Secure), and how many attempts were sent to pay_api.
    op.add_column("payments", sa.Column("next_charge_at", sa.DateTime(timezone=True)))
    op.add_column(
        "payments", sa.Column("charge_attempts", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_index(
        "uq_payments_renewal_period",
        "payments",
        ["subscription_id", "period_start"],
        unique=True,
        postgresql_where=sa.text("kind = 'renewal'"),
    )
    op.create_check_constraint(
        op.f("ck_payments_renewal_has_period"),
        "payments",
        "kind <> 'renewal' OR (period_start IS NOT NULL AND period_end > period_start)",
    )
    op.create_index(
        "ix_payments_renewal_next_charge",
        "payments",
        ["next_charge_at"],
        postgresql_where=sa.text(
            "kind = 'renewal' AND status IN ('created', 'pending') AND next_charge_at IS NOT NULL"
        ),
    )
    # Dunning: when the subscription fell past due, until when access lasts, the last decline.
    op.add_column("subscriptions", sa.Column("past_due_since", sa.DateTime(timezone=True)))
    op.add_column("subscriptions", sa.Column("grace_until", sa.DateTime(timezone=True)))
    op.add_column("subscriptions", sa.Column("last_decline_code", sa.Text()))
    op.add_column("subscriptions", sa.Column("last_decline_message", sa.Text()))
    op.create_check_constraint(
        op.f("ck_subscriptions_past_due_has_grace"),
        "subscriptions",
        "status <> 'past_due' OR grace_until IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_subscriptions_past_due_has_grace"), "subscriptions", type_="check"
    )
    for column in ("last_decline_message", "last_decline_code", "grace_until", "past_due_since"):
        op.drop_column("subscriptions", column)
    op.drop_index("ix_payments_renewal_next_charge", table_name="payments")
    op.drop_constraint(op.f("ck_payments_renewal_has_period"), "payments", type_="check")
    op.drop_index("uq_payments_renewal_period", table_name="payments")
    op.drop_column("payments", "charge_attempts")
    op.drop_column("payments", "next_charge_at")
