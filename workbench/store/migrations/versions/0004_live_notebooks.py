"""Live notebooks (frozen promoted copies on a schedule) and their runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:03:00
"""

import sqlalchemy as sa
from alembic import op

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_notebooks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("status IN ('active', 'paused', 'stopped')", name=op.f("ck_live_notebooks_status")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "session_id"],
            ["trading_sessions.tenant_id", "trading_sessions.id"],
            name=op.f("fk_live_notebooks_tenant_id_session_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_live_notebooks_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_notebooks")),
        sa.UniqueConstraint("session_id", "version", name=op.f("uq_live_notebooks_session_id_version")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_live_notebooks_tenant_id_id")),
    )
    tenant_table("live_notebooks", "SELECT, INSERT, UPDATE, DELETE")
    op.create_table(
        "notebook_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("live_notebook_id", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failing_cell", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'skipped')", name=op.f("ck_notebook_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "live_notebook_id"],
            ["live_notebooks.tenant_id", "live_notebooks.id"],
            name=op.f("fk_notebook_runs_tenant_id_live_notebook_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_notebook_runs_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notebook_runs")),
        sa.UniqueConstraint(
            "live_notebook_id", "scheduled_for", name=op.f("uq_notebook_runs_live_notebook_id_scheduled_for")
        ),
    )
    tenant_table("notebook_runs", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    forget_tenant_table("notebook_runs")
    op.drop_table("notebook_runs")
    forget_tenant_table("live_notebooks")
    op.drop_table("live_notebooks")
