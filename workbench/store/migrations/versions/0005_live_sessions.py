"""Live sessions: how a session trades (market type, timeframe, settings, simulation anchor,
last tick), order legs, and the paper exchange's accounts, positions, orders and fills.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ACCOUNT_FK = (["tenant_id", "account_id"], ["paper_accounts.tenant_id", "paper_accounts.id"])


def upgrade() -> None:
    op.add_column(
        "trading_sessions", sa.Column("market_type", sa.Text(), server_default=sa.text("'spot'"), nullable=False)
    )
    op.add_column("trading_sessions", sa.Column("timeframe", sa.Text(), server_default=sa.text("'1h'"), nullable=False))
    op.add_column(
        "trading_sessions",
        sa.Column("settings", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column("trading_sessions", sa.Column("init_equity", sa.Numeric(), nullable=True))
    op.add_column("trading_sessions", sa.Column("history_from", sa.DateTime(timezone=True), nullable=True))
    op.add_column("trading_sessions", sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("trading_sessions", sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "trading_sessions", sa.Column("failed_ticks", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("orders", sa.Column("candle_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("leg", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("average", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_table(
        "paper_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("cash", sa.Numeric(), nullable=False),
        sa.Column("synced", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_id", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_paper_accounts_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_accounts")),
        sa.UniqueConstraint("tenant_id", "account", name=op.f("uq_paper_accounts_tenant_id_account")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_paper_accounts_tenant_id_id")),
    )
    tenant_table("paper_accounts", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "paper_positions",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("units", sa.Numeric(), nullable=False),
        sa.Column("entry", sa.Numeric(), nullable=False),
        sa.Column("margin", sa.Numeric(), nullable=False),
        sa.Column("leverage", sa.Numeric(), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(*_ACCOUNT_FK, name=op.f("fk_paper_positions_tenant_id_account_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_paper_positions_tenant_id")),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_paper_positions")),
    )
    tenant_table("paper_positions", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "paper_orders",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=True),
        sa.Column("filled", sa.Numeric(), nullable=False),
        sa.Column("average", sa.Numeric(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_paper_orders_side")),
        sa.CheckConstraint(
            "status IN ('new', 'open', 'closed', 'canceled', 'expired', 'rejected')",
            name=op.f("ck_paper_orders_status"),
        ),
        sa.ForeignKeyConstraint(*_ACCOUNT_FK, name=op.f("fk_paper_orders_tenant_id_account_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_paper_orders_tenant_id")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_paper_orders")),
    )
    tenant_table("paper_orders", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "paper_fills",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=False),
        sa.Column("fee", sa.Numeric(), nullable=False),
        sa.Column("fee_currency", sa.Text(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taker", sa.Boolean(), nullable=True),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(*_ACCOUNT_FK, name=op.f("fk_paper_fills_tenant_id_account_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_paper_fills_tenant_id")),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_paper_fills")),
        sa.UniqueConstraint("account_id", "seq", name=op.f("uq_paper_fills_account_id_seq")),
    )
    tenant_table("paper_fills", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    for table in ("paper_fills", "paper_orders", "paper_positions", "paper_accounts"):
        forget_tenant_table(table)
        op.drop_table(table)
    for column in ("reduce_only", "average", "leg", "candle_at"):
        op.drop_column("orders", column)
    for column in (
        "failed_ticks",
        "last_tick_at",
        "anchor_at",
        "history_from",
        "init_equity",
        "settings",
        "timeframe",
        "market_type",
    ):
        op.drop_column("trading_sessions", column)
