"""A hostile tenant with raw SQL on its own connection tries to leave its rows.

Tenant ``mallory`` connects with its own role (the URL its processes get) and tries what
PostgreSQL offers beyond row-level security: large objects, changing its own role, other
databases, server files and programs, other roles, extensions and C functions, the session
list. Each attempt fails, and the victim's rows read by the owner before and after are the
same. Runs on every backend of the ``database`` fixture (embedded and the machine's server).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy import make_url

from workbench import store
from workbench.store._rls import MAINTENANCE_DATABASES

VICTIM_TABLES = ("tenants", "strategies", "exchange_accounts", "tenant_data_keys")


@pytest.fixture(scope="module")
def tenants(database):
    """Hostile ``mallory`` and victim ``victor``, who has a strategy, an account and a data key."""
    mallory, victor = store.create_tenant("mallory"), store.create_tenant("victor")
    with store.owner_session() as s:
        s.add(store.Strategy(tenant_id=victor.id, name="secret", template="channel", params={"n": 20}))
        s.add(store.TenantDataKey(tenant_id=victor.id, version=1, wrapped_key=b"wrapped", master_key_version=1))
        s.flush()
        s.add(
            store.ExchangeAccount(
                tenant_id=victor.id,
                exchange="binance",
                label="main",
                api_key_ct=b"ct",
                secret_ct=b"ct",
                key_hint="ab12…9f",
                data_key_version=1,
            )
        )
    return {"mallory": mallory, "victor": victor}


def _libpq(database, url: str) -> str:
    return database.server.libpq_url(url)


def _victim_rows(database, victor: store.Tenant) -> dict[str, list[str]]:
    """Everything of the victim's, as the owner reads it."""
    with psycopg.connect(_libpq(database, database.url), autocommit=True) as owner:
        return {
            table: sorted(
                json.dumps(row, default=str)
                for (row,) in owner.execute(
                    sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE {} = %s").format(
                        sql.Identifier(table), sql.Identifier("id" if table == "tenants" else "tenant_id")
                    ),
                    [victor.id],
                )
            )
            for table in VICTIM_TABLES
        }


@pytest.fixture
def mallory(database, tenants):
    """Mallory's connection; the victim's rows must be the same after the test."""
    before = _victim_rows(database, tenants["victor"])
    with psycopg.connect(_libpq(database, store.tenant_url("mallory")), autocommit=True) as conn:
        yield conn
    assert _victim_rows(database, tenants["victor"]) == before


ATTACKS = {
    "large object create": "SELECT lo_create(0)",
    "large object from bytea": "SELECT lo_from_bytea(0, 'planted')",
    "large object creat": "SELECT lo_creat(-1)",
    "large object import": "SELECT lo_import('/etc/passwd')",
    "large object export": "SELECT lo_export(1, '/tmp/workbench-planted')",
    "large object put": "SELECT lo_put(1, 0, 'x')",
    "large object get": "SELECT lo_get(1)",
    "large object catalogue": "SELECT * FROM pg_largeobject",
    "copy to program": "COPY (SELECT 1) TO PROGRAM 'id > /tmp/workbench-planted'",
    "copy from program": "COPY strategies (name) FROM PROGRAM 'echo planted'",
    "copy to file": "COPY strategies TO '/tmp/workbench-planted'",
    "copy from file": "COPY strategies (name) FROM '/etc/hostname'",
    "read file": "SELECT pg_read_file('/etc/passwd')",
    "read binary file": "SELECT pg_read_binary_file('/etc/passwd')",
    "list directory": "SELECT pg_ls_dir('.')",
    "stat file": "SELECT pg_stat_file('postgresql.conf')",
    "server log folder": "SELECT * FROM pg_ls_logdir()",
    "session list": "SELECT usename, pid FROM pg_stat_activity",
    "session list function": "SELECT * FROM pg_stat_get_activity(NULL)",
    "backend owner by number": "SELECT pg_stat_get_backend_userid(1)",
    "role passwords": "SELECT rolname, rolpassword FROM pg_authid",
    "shadow view": "SELECT usename, passwd FROM pg_shadow",
    "server settings file": "SELECT * FROM pg_hba_file_rules",
    "superuser setting": "SET log_statement = 'all'",
    "own role superuser": "ALTER ROLE current_user SUPERUSER",
    "own role createrole": "ALTER ROLE current_user CREATEROLE",
    "own role bypassrls": "ALTER ROLE current_user BYPASSRLS",
    "own role connection limit": "ALTER ROLE current_user CONNECTION LIMIT 1000",
    "own role valid until": "ALTER ROLE current_user VALID UNTIL 'infinity'",
    "c function": "CREATE FUNCTION public.planted() RETURNS int LANGUAGE c AS '/lib/x86_64-linux-gnu/libc.so.6', 'getpid'",
    "internal function": "CREATE FUNCTION public.planted() RETURNS int LANGUAGE internal AS 'int4in'",
    "sql function": "CREATE FUNCTION public.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "dblink": "CREATE EXTENSION dblink",
    "postgres_fdw": "CREATE EXTENSION postgres_fdw",
    "untrusted language": "CREATE EXTENSION plpython3u",
    "foreign server": "CREATE SERVER planted FOREIGN DATA WRAPPER postgres_fdw",
    "schema": "CREATE SCHEMA planted",
    "temporary table": "CREATE TEMP TABLE planted (x int)",
    "table": "CREATE TABLE public.planted (x int)",
    "data keys read": "SELECT * FROM tenant_data_keys",
    "data keys write": "INSERT INTO tenant_data_keys (version, wrapped_key, master_key_version) VALUES (9, 'x', 1)",
    "accounts write": "INSERT INTO exchange_accounts (exchange, label, api_key_ct, secret_ct, key_hint, "
    "data_key_version) VALUES ('binance', 'planted', 'x', 'x', 'x', 1)",
    "accounts update": "UPDATE exchange_accounts SET label = 'planted'",
    "accounts delete": "DELETE FROM exchange_accounts",
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_sql_beyond_the_tenant_rows_is_refused(mallory, attack):
    with pytest.raises(
        (errors.InsufficientPrivilege, errors.FeatureNotSupported, errors.UndefinedFile, errors.UndefinedObject)
    ) as refused:
        mallory.execute(ATTACKS[attack])
    if not isinstance(refused.value, errors.InsufficientPrivilege):
        # an extension or file that is not installed is refused before any privilege check;
        # make sure the privilege is missing too
        assert attack in ("dblink", "postgres_fdw", "untrusted language", "foreign server", "c function")
    assert (
        mallory.execute(
            "SELECT count(*) FROM pg_largeobject_metadata WHERE lomowner = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
        ).fetchone()[0]
        == 0
    )
    assert (
        mallory.execute(
            "SELECT count(*) FROM pg_extension WHERE extname IN ('dblink', 'postgres_fdw', 'plpython3u')"
        ).fetchone()[0]
        == 0
    )
    assert mallory.execute("SELECT count(*) FROM pg_proc WHERE proname = 'planted'").fetchone()[0] == 0


def test_other_roles_are_out_of_reach(database, mallory, tenants):
    victor = tenants["victor"].role_name
    owner = make_url(database.url).username
    attempts = [
        sql.SQL("SET ROLE {}").format(sql.Identifier(victor)),
        sql.SQL("SET ROLE {}").format(sql.Identifier(owner)),
        sql.SQL("SET ROLE postgres"),
        sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(victor)),
        sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(owner)),
        sql.SQL("ALTER ROLE {} PASSWORD 'planted'").format(sql.Identifier(victor)),
        sql.SQL("ALTER ROLE {} SET search_path = planted").format(sql.Identifier(victor)),
        sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(victor)),
        sql.SQL("GRANT {} TO current_user").format(sql.Identifier(victor)),
        sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_get_activity(NULL) WHERE pid <> pg_backend_pid()"),
    ]
    for attempt in attempts:
        with pytest.raises(errors.InsufficientPrivilege):
            mallory.execute(attempt)
    with psycopg.connect(_libpq(database, store.tenant_url("victor")), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == victor
        assert conn.execute("SELECT count(*) FROM strategies WHERE name = 'secret'").fetchone()[0] == 1


def test_other_databases_refuse_a_tenant(database, mallory, tenants, pg_server):
    """No CONNECT on the maintenance databases or on another workbench database; the
    operator's own databases are the operator's to close, and ``workbench db check`` names them."""
    other = pg_server.create_database()
    try:
        with psycopg.connect(_libpq(database, database.server.url(other)), autocommit=True) as admin:
            admin.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(other)))
        url = make_url(store.tenant_url("mallory"))
        for name in (*MAINTENANCE_DATABASES, other):
            with pytest.raises(psycopg.OperationalError, match="permission denied for database|CONNECT privilege"):
                psycopg.connect(_libpq(database, url.set(database=name).render_as_string(hide_password=False)))
    finally:
        pg_server.drop_database(other)


def test_the_check_names_what_public_still_may(database, pg_server, tenants):
    """A database the operator leaves open to PUBLIC shows up in the check; nothing else does."""
    opened = pg_server.create_database()
    try:
        found = store.check_tenant_roles()
        assert f"PUBLIC may connect to database {opened!r}" in found
        assert not [
            line
            for line in found
            if "functions" in line or "pg_stat_activity" in line or "temporary" in line or line.startswith("tenant ")
        ], found
    finally:
        pg_server.drop_database(opened)


def test_a_tenant_that_changes_its_own_role_gets_it_back(database, pg_server, tenants):
    """PostgreSQL lets a role set its own password and defaults; the next URL handed out puts
    them back (and an operator's check reports it)."""
    role = tenants["mallory"].role_name
    with psycopg.connect(_libpq(database, store.tenant_url("mallory")), autocommit=True) as conn:
        conn.execute("ALTER ROLE current_user PASSWORD 'mallory-chose-this-1'")
        conn.execute("ALTER ROLE current_user SET statement_timeout = '1ms'")
        conn.execute(
            sql.SQL("ALTER ROLE current_user IN DATABASE {} SET search_path = planted").format(
                sql.Identifier(database.name)
            )
        )
    undone = store.restore_role(role)
    if pg_server.backend == "embedded":
        assert undone[0] == "password"
        url = make_url(store.tenant_url("mallory"))
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                _libpq(database, url.set(password="mallory-chose-this-1").render_as_string(hide_password=False))
            )
    # the machine's server trusts loopback logins, so there no password is checked at all
    assert [line for line in undone if line.startswith("defaults")] == [
        "defaults statement_timeout=1ms",
        f"defaults search_path=planted in database {database.name}",
    ]
    with psycopg.connect(_libpq(database, store.tenant_url("mallory")), autocommit=True) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE r.rolname = current_user"
            ).fetchone()[0]
            == 0
        )
    assert store.restore_role(role) == []


def test_role_names_stay_visible_but_nothing_else_of_them(mallory, tenants):
    """PostgreSQL names every role to everyone (``oid::regrole``, the ACL columns of every
    table and database), so pg_roles stays readable; what it shows is no secret."""
    victor = tenants["victor"].role_name
    assert mallory.execute("SELECT rolpassword FROM pg_roles WHERE rolname = %s", [victor]).fetchone() == ("********",)
    acl = mallory.execute("SELECT relacl::text FROM pg_class WHERE relname = 'strategies'").fetchone()[0]
    assert victor in acl  # why hiding pg_roles would not hide the names
