"""Row-level security plumbing shared by the migrations and tenant management.

A tenant-owned table gets ENABLE + FORCE ROW LEVEL SECURITY (FORCE: the rule holds even for
the table's owner unless it has BYPASSRLS) and one policy, ``tenant_rows``, for reading and
writing alike. Which privileges tenant roles have on which table is recorded in
``tenant_table_grants`` by the migration that creates the table, so a tenant created at any
revision gets exactly what that revision's tables need, and a migration adding a table grants
it to the tenants that already exist.
"""
from __future__ import annotations

import re

import psycopg
from alembic import op
from psycopg import sql
from sqlalchemy import Connection, text

from workbench.errors import DatabaseError

# current_tenant_id() maps the connected role (current_user, not a settable GUC) to its tenant
TENANT_ROWS = "tenant_id = (SELECT current_tenant_id())"
_PRIVILEGES = re.compile(r"(SELECT|INSERT|UPDATE|DELETE)(, (SELECT|INSERT|UPDATE|DELETE))*")


def tenant_table(table: str, privileges: str | None, rows: str = TENANT_ROWS) -> None:
    """Migration step: isolate ``table`` by ``rows`` and grant tenants ``privileges``
    (e.g. ``"SELECT, INSERT"``; None: tenants get no access at all)."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_rows ON {table} USING ({rows}) WITH CHECK ({rows})")
    if privileges is None:
        return
    bind = op.get_bind()
    bind.execute(text("INSERT INTO tenant_table_grants (table_name, privileges) VALUES (:t, :p)"),
                 {"t": table, "p": privileges})
    roles = bind.execute(text("SELECT role_name FROM tenants WHERE removed_at IS NULL")).scalars()
    for role in roles:
        _grant(driver(bind), role, table, privileges)


def forget_tenant_table(table: str) -> None:
    """Migration step (downgrade): drop ``table``'s grant record before dropping the table."""
    op.get_bind().execute(text("DELETE FROM tenant_table_grants WHERE table_name = :t"), {"t": table})


def grant_tenant(conn: psycopg.Connection, role: str) -> None:
    """Give tenant ``role`` what tenants get: connecting to this database and the recorded
    privileges on each tenant table."""
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(_database(conn)), sql.Identifier(role)))
    for table, privileges in conn.execute("SELECT table_name, privileges FROM tenant_table_grants"):
        _grant(conn, role, table, privileges)


def revoke_tenant(conn: psycopg.Connection, role: str) -> None:
    """Take back everything :func:`grant_tenant` gave ``role``."""
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
        sql.Identifier(_database(conn)), sql.Identifier(role)))


def driver(bind: Connection) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy connection (same transaction)."""
    return bind.connection.driver_connection


def _database(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT current_database()").fetchone()[0]


def _grant(conn: psycopg.Connection, role: str, table: str, privileges: str) -> None:
    if not _PRIVILEGES.fullmatch(privileges):
        raise DatabaseError(f"tenant_table_grants row {table!r} has malformed privileges {privileges!r}")
    conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
        sql.SQL(privileges), sql.Identifier(table), sql.Identifier(role)))
