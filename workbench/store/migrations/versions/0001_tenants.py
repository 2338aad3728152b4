"""Tenants, their role mapping and the grant registry.

current_tenant_id() maps the connected role (current_user: a tenant cannot change it, since
tenant roles are members of nothing) to its tenant; it is NULL for any other role and for a
removed tenant, so the policies then match no row.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:00:00
"""

import sqlalchemy as sa
from alembic import op
from psycopg import sql

from workbench.store._rls import driver, revoke_tenant, tenant_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
        sa.UniqueConstraint("role_name", name=op.f("uq_tenants_role_name")),
    )
    op.create_table(
        "tenant_table_grants",
        sa.Column("table_name", sa.Text(), primary_key=True),
        sa.Column("privileges", sa.Text(), nullable=False),
    )
    op.execute("""
        CREATE FUNCTION current_tenant_id() RETURNS bigint LANGUAGE sql STABLE AS $$
            SELECT id FROM public.tenants WHERE role_name = current_user AND removed_at IS NULL
        $$""")
    # a tenant sees its own tenants row, which is what current_tenant_id() reads
    tenant_table("tenants", "SELECT", rows="role_name = current_user")
    # tenant roles get CONNECT one by one; nobody creates objects in the public schema
    _database_privileges("REVOKE", "FROM")
    # the PostgreSQL 15+ default, made sure of on older servers; downgrade leaves it so
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def downgrade() -> None:
    # tenant roles live outside the database: drop them with the tenants that own them
    conn = driver(op.get_bind())
    for (role,) in conn.execute("SELECT role_name FROM tenants").fetchall():
        revoke_tenant(conn, role)
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    _database_privileges("GRANT", "TO")
    op.execute("DROP FUNCTION current_tenant_id()")
    op.drop_table("tenant_table_grants")
    op.drop_table("tenants")


def _database_privileges(verb: str, preposition: str) -> None:
    op.execute(f"""DO $$ BEGIN EXECUTE format(
        '{verb} CONNECT, TEMPORARY ON DATABASE %I {preposition} PUBLIC', current_database()); END $$""")
