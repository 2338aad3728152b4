"""Strategies (immutable once they ran live), tenant data keys and exchange accounts.

Tenant roles may read and add their own wrapped data keys (useless without the master key)
but not change them; the trusted side re-wraps them when the master key rotates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:01:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strategies",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("risk_limits", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("is_locked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("name <> ''", name=op.f("ck_strategies_name")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_strategies_version")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "parent_id"],
            ["strategies.tenant_id", "strategies.id"],
            name=op.f("fk_strategies_tenant_id_parent_id"),
            ondelete="SET NULL (parent_id)",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_strategies_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_strategies_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "name", "version", name=op.f("uq_strategies_tenant_id_name_version")),
    )
    tenant_table("strategies", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "tenant_data_keys",
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_data_keys_tenant_id")),
        sa.PrimaryKeyConstraint("tenant_id", "version", name=op.f("pk_tenant_data_keys")),
    )
    tenant_table("tenant_data_keys", "SELECT, INSERT")
    op.create_table(
        "exchange_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("permissions", sa.Text(), server_default=sa.text("'read'"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("api_key_ct", sa.LargeBinary(), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("passphrase_ct", sa.LargeBinary(), nullable=True),
        sa.Column("key_hint", sa.Text(), nullable=False),
        sa.Column("data_key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("permissions IN ('read', 'trade')", name=op.f("ck_exchange_accounts_permissions")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "data_key_version"],
            ["tenant_data_keys.tenant_id", "tenant_data_keys.version"],
            name=op.f("fk_exchange_accounts_tenant_id_data_key_version"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_exchange_accounts_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_accounts")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_exchange_accounts_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "label", name=op.f("uq_exchange_accounts_tenant_id_label")),
    )
    tenant_table("exchange_accounts", "SELECT, INSERT, UPDATE, DELETE")
    op.execute("""
        CREATE FUNCTION strategies_refuse_locked_edit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.is_locked AND (NEW.tenant_id, NEW.name, NEW.template, NEW.params, NEW.risk_limits,
                                  NEW.version, NEW.is_locked)
                IS DISTINCT FROM (OLD.tenant_id, OLD.name, OLD.template, OLD.params, OLD.risk_limits,
                                  OLD.version, OLD.is_locked) THEN
                RAISE EXCEPTION 'strategy % (% version %) has run live and is immutable',
                    OLD.id, OLD.name, OLD.version
                    USING ERRCODE = 'check_violation',
                          HINT = 'save the change as a new version (parent_id = this strategy)';
            END IF;
            RETURN NEW;
        END $$""")
    op.execute("""
        CREATE TRIGGER refuse_locked_edit BEFORE UPDATE ON strategies
        FOR EACH ROW EXECUTE FUNCTION strategies_refuse_locked_edit()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER refuse_locked_edit ON strategies")
    op.execute("DROP FUNCTION strategies_refuse_locked_edit()")
    forget_tenant_table("exchange_accounts")
    op.drop_table("exchange_accounts")
    forget_tenant_table("tenant_data_keys")
    op.drop_table("tenant_data_keys")
    forget_tenant_table("strategies")
    op.drop_table("strategies")
