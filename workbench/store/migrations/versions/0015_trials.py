"""The trial ledger: every research run a tenant makes, so a search is counted in full.

``trials``: one row per sweep, walk-forward, cross-validation or validation a tenant runs:
the strategy family (a template's name, or a rule strategy's canonical text with its
variables' names only), the data set (sha256 of the candles' OHLCV values, first and last
bar's open time, bar count), the parameter combinations tried, what ran and when. The
deflated Sharpe ratio of a validation counts every combination the tenant ever tried on
that family and data set, not only the last grid's. Tenants may read and add their own rows
and nothing else; nobody may change or delete a row (triggers refuse UPDATE, DELETE and
TRUNCATE even to the table's owner), so a search cannot be forgotten.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 19:00:00
"""

import sqlalchemy as sa
from alembic import op

from workbench.store._rls import driver, forget_tenant_table, tenant_table

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_APPEND_ONLY = """
CREATE FUNCTION trials_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trials is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER trials_append_only BEFORE UPDATE OR DELETE ON trials
    FOR EACH ROW EXECUTE FUNCTION trials_refuse_change();
CREATE TRIGGER trials_no_truncate BEFORE TRUNCATE ON trials
    FOR EACH STATEMENT EXECUTE FUNCTION trials_refuse_change();
"""


def upgrade() -> None:
    op.create_table(
        "trials",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("family", sa.Text(), nullable=False),
        sa.Column("data_hash", sa.Text(), nullable=False),
        sa.Column("data_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bars", sa.BigInteger(), nullable=False),
        sa.Column("combinations", sa.BigInteger(), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("combinations >= 1", name=op.f("ck_trials_combinations")),
        sa.CheckConstraint("bars >= 1", name=op.f("ck_trials_bars")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_trials_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
    )
    op.create_index(op.f("ix_trials_tenant_id_data_hash"), "trials", ["tenant_id", "data_hash"])
    tenant_table("trials", "SELECT, INSERT")
    driver(op.get_bind()).execute(_APPEND_ONLY)  # no parameters: psycopg sends it as one script


def downgrade() -> None:
    op.execute("DROP TABLE trials")  # DROP is not TRUNCATE: the triggers go with the table
    op.execute("DROP FUNCTION trials_refuse_change()")
    forget_tenant_table("trials")
