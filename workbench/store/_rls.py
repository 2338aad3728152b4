"""Row-level security plumbing shared by the migrations and tenant management.

A tenant-owned table gets ENABLE + FORCE ROW LEVEL SECURITY (FORCE: the rule holds even for
the table's owner unless it has BYPASSRLS) and one policy, ``tenant_rows``, for reading and
writing alike. Which privileges tenant roles have on which table is recorded in
``tenant_table_grants`` by the migration that creates the table, so a tenant created at any
revision gets exactly what that revision's tables need, and a migration adding a table grants
it to the tenants that already exist.

PostgreSQL also grants PUBLIC (so every tenant role) more than a tenant needs: the
large-object functions (objects outside row-level security, storage, a channel between
tenants), the view of every session on the server, and CONNECT on the maintenance databases.
:func:`close_public_access` takes these back where the connected role may (a superuser);
:func:`public_exposures` says what is still open, e.g. on a managed server whose owner role
is no superuser.
"""

from __future__ import annotations

import re
from typing import cast

import psycopg
from alembic import op
from psycopg import sql
from psycopg.rows import TupleRow
from sqlalchemy import Connection, text

from workbench.errors import DatabaseError

# current_tenant_id() maps the connected role (current_user, not a settable GUC) to its tenant
TENANT_ROWS = "tenant_id = (SELECT current_tenant_id())"
_PRIVILEGES = re.compile(r"(SELECT|INSERT|UPDATE|DELETE)(, (SELECT|INSERT|UPDATE|DELETE))*")
# functions PUBLIC may run by default that tenants must not: large objects, and the backend
# status functions under pg_stat_activity (who is connected, since when, from where)
_CLOSED_FUNCTIONS = r"""
    SELECT oid::regprocedure::text FROM pg_proc
    WHERE pronamespace = 'pg_catalog'::regnamespace
      AND (proname LIKE 'lo\_%' OR proname IN ('loread', 'lowrite', 'pg_stat_get_activity')
           OR proname LIKE 'pg\_stat\_get\_backend\_%')
    ORDER BY 1"""
_CLOSED_VIEWS = ("pg_catalog.pg_stat_activity",)
# every cluster has them and grants PUBLIC CONNECT on them; template0 allows no connections
MAINTENANCE_DATABASES = ("postgres", "template1")


def tenant_table(table: str, privileges: str | None, rows: str = TENANT_ROWS) -> None:
    """Migration step: isolate ``table`` by ``rows`` and grant tenants ``privileges``
    (e.g. ``"SELECT, INSERT"``; None: tenants get no access at all)."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_rows ON {table} USING ({rows}) WITH CHECK ({rows})")
    if privileges is None:
        return
    bind = op.get_bind()
    bind.execute(
        text("INSERT INTO tenant_table_grants (table_name, privileges) VALUES (:t, :p)"), {"t": table, "p": privileges}
    )
    roles = bind.execute(text("SELECT role_name FROM tenants WHERE removed_at IS NULL")).scalars()
    for role in roles:
        _grant(driver(bind), role, table, privileges)


def forget_tenant_table(table: str) -> None:
    """Migration step (downgrade): drop ``table``'s grant record before dropping the table."""
    op.get_bind().execute(text("DELETE FROM tenant_table_grants WHERE table_name = :t"), {"t": table})


def grant_tenant(conn: psycopg.Connection, role: str) -> None:
    """Give tenant ``role`` what tenants get: connecting to this database and the recorded
    privileges on each tenant table."""
    conn.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(_database(conn)), sql.Identifier(role))
    )
    for table, privileges in conn.execute("SELECT table_name, privileges FROM tenant_table_grants"):
        _grant(conn, role, table, privileges)


def revoke_tenant(conn: psycopg.Connection, role: str) -> None:
    """Take back everything :func:`grant_tenant` gave ``role``."""
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(role)))
    conn.execute(
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(_database(conn)), sql.Identifier(role))
    )


def set_tenant_privileges(bind: Connection, table: str, privileges: str | None) -> None:
    """Migration step: tenants now get ``privileges`` on ``table`` (None: nothing), both the
    tenants that exist and the ones created later."""
    conn = driver(bind)
    conn.execute("DELETE FROM tenant_table_grants WHERE table_name = %s", [table])
    if privileges is not None:
        conn.execute("INSERT INTO tenant_table_grants (table_name, privileges) VALUES (%s, %s)", [table, privileges])
    for (role,) in conn.execute("SELECT role_name FROM tenants WHERE removed_at IS NULL").fetchall():
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(table), sql.Identifier(role)))
        if privileges is not None:
            _grant(conn, role, table, privileges)


def close_public_access(conn: psycopg.Connection, keep: str) -> bool:
    """Revoke from PUBLIC, in the connected database, the large-object and backend-status
    functions and ``pg_stat_activity``, and on the server CONNECT on the maintenance
    databases; role ``keep`` (the owner) keeps them. Only a superuser may change these
    catalogue objects: for any other role nothing is done and False is returned."""
    if not cast(TupleRow, conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone())[0]:
        return False
    owner = sql.Identifier(keep)
    for (function,) in conn.execute(_CLOSED_FUNCTIONS).fetchall():
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(sql.SQL(function)))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), owner))
    for view in _CLOSED_VIEWS:
        conn.execute(sql.SQL("REVOKE SELECT ON {} FROM PUBLIC").format(sql.SQL(view)))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(view), owner))
    for database in MAINTENANCE_DATABASES:
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), owner))
    return True


def public_exposures(conn: psycopg.Connection) -> list[str]:
    """What PUBLIC, and so every tenant role, may still do that :func:`close_public_access`
    would take back, plus the other databases it may connect to; one line each."""
    found = []
    functions = [
        name
        for (name,) in conn.execute(_CLOSED_FUNCTIONS).fetchall()
        if cast(TupleRow, conn.execute("SELECT has_function_privilege('public', %s, 'EXECUTE')", [name]).fetchone())[0]
    ]
    if functions:
        found.append(
            f"PUBLIC may run {len(functions)} large-object or backend-status functions "
            f"({', '.join(functions[:3])}, ...)"
        )
    found += [
        f"PUBLIC may read {view}"
        for view in _CLOSED_VIEWS
        if cast(TupleRow, conn.execute("SELECT has_table_privilege('public', %s, 'SELECT')", [view]).fetchone())[0]
    ]
    databases = conn.execute(
        "SELECT datname FROM pg_database WHERE datallowconn AND datname <> current_database() "
        "AND has_database_privilege('public', datname, 'CONNECT') ORDER BY 1"
    ).fetchall()
    found += [f"PUBLIC may connect to database {name!r}" for (name,) in databases]
    if cast(
        TupleRow, conn.execute("SELECT has_database_privilege('public', current_database(), 'TEMPORARY')").fetchone()
    )[0]:
        found.append("PUBLIC may create temporary tables in this database")
    return found


def driver(bind: Connection) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy connection (same transaction)."""
    return cast(psycopg.Connection, bind.connection.driver_connection)


def _database(conn: psycopg.Connection) -> str:
    return cast(TupleRow, conn.execute("SELECT current_database()").fetchone())[0]


def _grant(conn: psycopg.Connection, role: str, table: str, privileges: str) -> None:
    if not _PRIVILEGES.fullmatch(privileges):
        raise DatabaseError(f"tenant_table_grants row {table!r} has malformed privileges {privileges!r}")
    conn.execute(
        sql.SQL("GRANT {} ON TABLE {} TO {}").format(sql.SQL(privileges), sql.Identifier(table), sql.Identifier(role))
    )
