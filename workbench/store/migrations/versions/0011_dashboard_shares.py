"""Read-only sharing of a session as a database-level grant to the viewer.

``dashboard_shares`` holds one row per (owner, session, viewer). The owner (``tenant_id`` and
``owner`` = the connected tenant, forced by policies) inserts, reads and deletes its rows; the
viewer reads the rows naming it and nothing else. With ``me`` = current_tenant_name():

- trading_sessions, equity_snapshots, orders: a tenant also reads the rows of sessions shared
  with ``me`` (SELECT only);
- fills: those of orders it may read that way;
- notebook_runs: those of the shared session's live notebooks: ``shared_live_session(owner,
  live notebook)`` is that notebook's session when it is shared with the connected login role,
  else NULL (SECURITY DEFINER, so the viewer never reads ``live_notebooks``, whose ``content``
  is the owner's notebook code).

Nothing else of the owner becomes readable: strategies, accounts, keys, live notebooks,
notifications stay the owner's alone. Deleting a share takes the rows away at once, and a
session's shares go with it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 02:00:00
"""

import sqlalchemy as sa
from alembic import op

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ME = "(SELECT current_tenant_name())"
SHARED = (
    "EXISTS (SELECT 1 FROM dashboard_shares d WHERE d.tenant_id = {table}.tenant_id "
    "AND d.session_id = {table}.{column} AND d.viewer = " + ME + ")"
)
SESSION_TABLES = (("trading_sessions", "id"), ("equity_snapshots", "session_id"), ("orders", "session_id"))


def upgrade() -> None:
    op.create_table(
        "dashboard_shares",
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.Column("owner", sa.Text(), server_default=sa.text("current_tenant_name()"), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("viewer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("viewer <> owner", name=op.f("ck_dashboard_shares_not_self")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "session_id"],
            ["trading_sessions.tenant_id", "trading_sessions.id"],
            name=op.f("fk_dashboard_shares_tenant_id_session_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_dashboard_shares_tenant_id")),
        sa.ForeignKeyConstraint(["owner"], ["tenants.name"], name=op.f("fk_dashboard_shares_owner")),
        sa.ForeignKeyConstraint(["viewer"], ["tenants.name"], name=op.f("fk_dashboard_shares_viewer")),
        sa.PrimaryKeyConstraint("tenant_id", "session_id", "viewer", name=op.f("pk_dashboard_shares")),
    )
    op.create_index("ix_dashboard_shares_viewer", "dashboard_shares", ["viewer"])
    tenant_table("dashboard_shares", "SELECT, INSERT, DELETE")
    op.execute(f"CREATE POLICY owner_is_me ON dashboard_shares AS RESTRICTIVE FOR INSERT WITH CHECK (owner = {ME})")
    op.execute(f"CREATE POLICY shared_with_me ON dashboard_shares FOR SELECT USING (viewer = {ME})")
    for table, column in SESSION_TABLES:
        op.execute(
            f"CREATE POLICY shared_with_me ON {table} FOR SELECT USING ({SHARED.format(table=table, column=column)})"
        )
    # the subquery reads orders with the caller's rights: the shared orders only
    op.execute(
        """CREATE POLICY shared_with_me ON fills FOR SELECT USING (EXISTS (
        SELECT 1 FROM orders o WHERE o.tenant_id = fills.tenant_id AND o.id = fills.order_id AND """
        + SHARED.format(table="o", column="session_id")
        + "))"
    )
    op.execute("""
        CREATE FUNCTION shared_live_session(owner_id bigint, live_id bigint) RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT l.session_id FROM public.live_notebooks l
            JOIN public.dashboard_shares d ON d.tenant_id = l.tenant_id AND d.session_id = l.session_id
            JOIN public.tenants t ON t.name = d.viewer
            WHERE l.tenant_id = owner_id AND l.id = live_id
              AND t.role_name = session_user AND t.removed_at IS NULL
        $$""")
    op.execute(
        "CREATE POLICY shared_with_me ON notebook_runs FOR SELECT USING "
        "(shared_live_session(tenant_id, live_notebook_id) IS NOT NULL)"
    )


def downgrade() -> None:
    for table in ("notebook_runs", "fills", *(table for table, _ in SESSION_TABLES)):
        op.execute(f"DROP POLICY shared_with_me ON {table}")
    op.execute("DROP FUNCTION shared_live_session(bigint, bigint)")
    forget_tenant_table("dashboard_shares")
    op.drop_table("dashboard_shares")
