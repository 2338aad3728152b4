"""What each exchange key may do, and the append-only audit log of every use of a decrypted key.

``exchange_key_reviews`` holds the exchange's latest answer about an account's key (may it
withdraw, is it IP-restricted, what else it may do, and the warning shown to the tenant); the
trusted side writes it when a key is added or checked, tenants read their own rows.

``key_use_audit`` gets one row each time the trusted side decrypts (or, when a key is added,
sends) a key: whose account, what for, which session and run, which process, when. Tenants
may read their own rows and nothing else; nobody may change or delete a row (triggers refuse
UPDATE, DELETE and TRUNCATE even to the table's owner), so the log outlives the account.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 02:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import driver, forget_tenant_table, tenant_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_APPEND_ONLY = """
CREATE FUNCTION key_use_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'key_use_audit is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER key_use_audit_append_only BEFORE UPDATE OR DELETE ON key_use_audit
    FOR EACH ROW EXECUTE FUNCTION key_use_audit_refuse_change();
CREATE TRIGGER key_use_audit_no_truncate BEFORE TRUNCATE ON key_use_audit
    FOR EACH STATEMENT EXECUTE FUNCTION key_use_audit_refuse_change();
"""


def upgrade() -> None:
    op.create_table(
        "exchange_key_reviews",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("can_withdraw", sa.Boolean(), nullable=True),
        sa.Column("ip_restricted", sa.Boolean(), nullable=True),
        sa.Column("abilities", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("warning", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["exchange_accounts.tenant_id", "exchange_accounts.id"],
            name=op.f("fk_exchange_key_reviews_tenant_id_account_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_exchange_key_reviews_tenant_id")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_exchange_key_reviews")),
    )
    tenant_table("exchange_key_reviews", "SELECT")
    op.create_table(
        "key_use_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("key_hint", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_key_use_audit_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_use_audit")),
    )
    op.create_index(op.f("ix_key_use_audit_tenant_id_used_at"), "key_use_audit", ["tenant_id", "used_at"])
    tenant_table("key_use_audit", "SELECT")
    driver(op.get_bind()).execute(_APPEND_ONLY)  # no parameters: psycopg sends it as one script


def downgrade() -> None:
    op.execute("DROP TABLE key_use_audit")  # DROP is not TRUNCATE: the triggers go with the table
    op.execute("DROP FUNCTION key_use_audit_refuse_change()")
    forget_tenant_table("key_use_audit")
    forget_tenant_table("exchange_key_reviews")
    op.drop_table("exchange_key_reviews")
