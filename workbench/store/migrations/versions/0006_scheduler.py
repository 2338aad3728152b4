"""The scheduler: procrastinate's job queue in schema ``procrastinate``, run bookkeeping columns.

procrastinate's own schema (tables, types, functions, triggers) is applied as the installed
procrastinate version ships it (``procrastinate.schema.SchemaManager``), inside a schema of its
own: tenants get no privilege on it (a job's arguments name runs of every tenant), and the
workbench's model comparison sees only the ``public`` tables. procrastinate is pinned to one
minor series in pyproject.toml; a newer series needs a migration applying its SQL migrations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 12:40:00
"""

from typing import cast

import sqlalchemy as sa
from alembic import op
from psycopg.rows import TupleRow
from sqlalchemy.dialects import postgresql

from workbench.store._rls import driver

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

QUEUE_SCHEMA = "procrastinate"


def upgrade() -> None:
    from procrastinate.schema import SchemaManager

    conn = driver(op.get_bind())
    path = cast(TupleRow, conn.execute("SELECT current_setting('search_path')").fetchone())[0]
    conn.execute(f"CREATE SCHEMA {QUEUE_SCHEMA}")
    conn.execute(f"SET LOCAL search_path TO {QUEUE_SCHEMA}")
    conn.execute(SchemaManager.get_schema())  # no parameters: psycopg sends it as one script
    conn.execute("SELECT set_config('search_path', %s, true)", [path])
    op.add_column("live_notebooks", sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("notebook_runs", sa.Column("job_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "notebook_runs",
        sa.Column(
            "timings", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column("notebook_runs", "timings")
    op.drop_column("notebook_runs", "job_id")
    op.drop_column("live_notebooks", "next_run_at")
    op.execute(f"DROP SCHEMA {QUEUE_SCHEMA} CASCADE")
