"""Trading sessions with their orders, fills and equity snapshots; backtest results.

A session running on a real exchange account locks its strategy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:02:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trading_sessions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("strategy_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange_account_id", sa.BigInteger(), nullable=True),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("leverage", sa.Numeric(), server_default=sa.text("1"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'stopped'"), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_balance", sa.Numeric(), nullable=True),
        sa.Column("total_pnl", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'paused', 'stopped', 'error')", name=op.f("ck_trading_sessions_status")
        ),
        sa.CheckConstraint("leverage > 0", name=op.f("ck_trading_sessions_leverage")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "exchange_account_id"],
            ["exchange_accounts.tenant_id", "exchange_accounts.id"],
            name=op.f("fk_trading_sessions_tenant_id_exchange_account_id"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "strategy_id"],
            ["strategies.tenant_id", "strategies.id"],
            name=op.f("fk_trading_sessions_tenant_id_strategy_id"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_trading_sessions_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_sessions")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_trading_sessions_tenant_id_id")),
    )
    tenant_table("trading_sessions", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("exchange_order_id", sa.Text(), nullable=True),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=True),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("filled", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'new'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.CheckConstraint(
            "status IN ('new', 'open', 'closed', 'canceled', 'expired', 'rejected')", name=op.f("ck_orders_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "session_id"],
            ["trading_sessions.tenant_id", "trading_sessions.id"],
            name=op.f("fk_orders_tenant_id_session_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_orders_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("session_id", "client_order_id", name=op.f("uq_orders_session_id_client_order_id")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_orders_tenant_id_id")),
    )
    tenant_table("orders", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "fills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange_trade_id", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("fee", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_currency", sa.Text(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["orders.tenant_id", "orders.id"],
            name=op.f("fk_fills_tenant_id_order_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_fills_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("order_id", "exchange_trade_id", name=op.f("uq_fills_order_id_exchange_trade_id")),
    )
    tenant_table("fills", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("balance", sa.Numeric(), nullable=False),
        sa.Column("equity", sa.Numeric(), nullable=False),
        sa.Column("position", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("pnl", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "session_id"],
            ["trading_sessions.tenant_id", "trading_sessions.id"],
            name=op.f("fk_equity_snapshots_tenant_id_session_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_equity_snapshots_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
        sa.UniqueConstraint("session_id", "ts", name=op.f("uq_equity_snapshots_session_id_ts")),
    )
    tenant_table("equity_snapshots", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "backtest_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("strategy_id", sa.BigInteger(), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("candles", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "strategy_id"],
            ["strategies.tenant_id", "strategies.id"],
            name=op.f("fk_backtest_results_tenant_id_strategy_id"),
            ondelete="SET NULL (strategy_id)",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_backtest_results_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_results")),
    )
    tenant_table("backtest_results", "SELECT, INSERT, UPDATE, DELETE")
    op.execute("""
        CREATE FUNCTION trading_sessions_lock_strategy() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'running' AND NEW.exchange_account_id IS NOT NULL THEN
                UPDATE strategies SET is_locked = true
                WHERE tenant_id = NEW.tenant_id AND id = NEW.strategy_id AND NOT is_locked;
            END IF;
            RETURN NEW;
        END $$""")
    op.execute("""
        CREATE TRIGGER lock_strategy AFTER INSERT OR UPDATE OF status, exchange_account_id
        ON trading_sessions FOR EACH ROW EXECUTE FUNCTION trading_sessions_lock_strategy()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER lock_strategy ON trading_sessions")
    op.execute("DROP FUNCTION trading_sessions_lock_strategy()")
    forget_tenant_table("backtest_results")
    op.drop_table("backtest_results")
    forget_tenant_table("equity_snapshots")
    op.drop_table("equity_snapshots")
    forget_tenant_table("fills")
    op.drop_table("fills")
    forget_tenant_table("orders")
    op.drop_table("orders")
    forget_tenant_table("trading_sessions")
    op.drop_table("trading_sessions")
