"""Funding the exchange paid or charged on a live session's perpetual position.

``funding_payments``: one row per funding settlement the exchange reports for the session's
symbol (Binance's ``FUNDING_FEE`` income, Gate's ``fund`` account-book entries), signed as
the exchange books it (positive: received), unique per session and the exchange's id of the
payment, so a tick that fetches it twice records it once. A backtest's ``funding_paid`` can
then be compared with what the session really paid.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 18:30:00
"""

import sqlalchemy as sa
from alembic import op

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "funding_payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange_payment_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "session_id"],
            ["trading_sessions.tenant_id", "trading_sessions.id"],
            name=op.f("fk_funding_payments_tenant_id_session_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_funding_payments_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_payments")),
        sa.UniqueConstraint(
            "session_id", "exchange_payment_id", name=op.f("uq_funding_payments_session_id_exchange_payment_id")
        ),
    )
    tenant_table("funding_payments", "SELECT, INSERT")


def downgrade() -> None:
    forget_tenant_table("funding_payments")
    op.drop_table("funding_payments")
