"""The database layer: embedded server lifecycle, migrations, schema rules, tenants and the CLI."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from decimal import Decimal

import psutil
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from workbench import store
from workbench.cli import main
from workbench.errors import DatabaseError, TenantError
from workbench.store import _migrate
from workbench.store._server import EmbeddedServer
from workbench.store.models import Base

TENANT_TABLES = [table.name for table in Base.metadata.sorted_tables if "tenant_id" in table.c]


# --- embedded server -------------------------------------------------------------------------


def _sql(server: EmbeddedServer, statement: str) -> list[tuple]:
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.slow
def test_embedded_server_outlives_its_starter_and_recovers_from_kill_9(server_folder, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_HOME", str(server_folder))
    monkeypatch.delenv("WORKBENCH_DATABASE_URL", raising=False)
    server = store.embedded_server()
    assert server.root == server_folder / "postgres"
    subprocess.run([sys.executable, "-m", "workbench.cli", "db", "start"], check=True, timeout=120)
    first = server.status()
    assert first.running, "the server stopped when the process that started it exited"
    assert main(["db", "status"]) == 0 and f"pid {first.pid}" in capsys.readouterr().out

    store.dispose()
    url = store.database_url()  # a second process finds the server instead of starting one
    assert server.status().pid == first.pid
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x numeric); INSERT INTO kept VALUES (42.5)")
    os.kill(first.pid, signal.SIGKILL)
    psutil.Process(first.pid).wait(10)
    assert main(["db", "status"]) == 3 and (server.data_dir / "postmaster.pid").exists()

    store.dispose()
    url = store.database_url()  # stale postmaster.pid, crash recovery
    second = server.status()
    assert second.running and second.pid != first.pid
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (Decimal("42.5"),)
    assert main(["db", "stop"]) == 0 and not server.status().running
    assert main(["db", "stop"]) == 0 and "was not running" in capsys.readouterr().out
    store.dispose()


def test_embedded_server_accepts_passwords_only_and_no_tcp(embedded_server):
    hba = (embedded_server.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)
    assert _sql(embedded_server, "SHOW listen_addresses") == [("",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=str(embedded_server.socket_dir), dbname="postgres", user="postgres", password="guess")


def test_embedded_server_as_root_runs_as_an_unprivileged_user(embedded_server):
    if os.geteuid() != 0:
        pytest.skip("only root needs a separate server account")
    process = psutil.Process(embedded_server.status().pid)
    uid = process.uids().effective
    assert uid != 0 and embedded_server.data_dir.stat().st_uid == uid
    assert embedded_server.data_dir.stat().st_mode & 0o777 == 0o700
    assert pwd.getpwuid(uid).pw_name == "workbench-postgres"
    assert _sql(embedded_server, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user") == [
        (False, True)
    ]  # the owner role is not a superuser


def test_database_url_must_be_postgresql(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///workbench.db")
    monkeypatch.delenv("WORKBENCH_DATABASE_URL", raising=False)
    with pytest.raises(DatabaseError, match="'sqlite'.*needs PostgreSQL"):
        store.database_url()
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5433/wb")
    assert store.database_url() == "postgresql+psycopg://u:p@db.example:5433/wb"


# --- migrations and schema -------------------------------------------------------------------


def _differences() -> list:
    with store.owner_engine().connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_migrations_walk_every_revision_down_and_up(empty_database):
    revisions = [
        script.revision for script in ScriptDirectory.from_config(_migrate._config()).walk_revisions("base", "heads")
    ]
    assert store.current_revision() is None
    store.upgrade()
    assert store.current_revision() == store.head_revision() == revisions[0]
    assert _differences() == []  # the migrations build exactly the models
    for below in [*revisions[1:], None]:
        store.downgrade(below or "base")
        assert store.current_revision() == below
    with store.owner_engine().connect() as connection:
        assert inspect(connection).get_table_names() == ["alembic_version"]
    for revision in reversed(revisions):
        store.upgrade(revision)
        assert store.current_revision() == revision
    assert _differences() == []


def test_a_tenant_created_at_an_old_revision_gets_the_newer_tables(empty_database):
    store.upgrade("0001")
    early = store.create_tenant("early")
    store.upgrade()
    with store.tenant_session("early") as s:
        s.add(store.Strategy(name="s", template="channel"))
    with store.owner_session() as s:
        assert s.scalar(select(store.Strategy.tenant_id)) == early.id
    store.downgrade("base")  # drops the tenant roles too
    with store.owner_engine().connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": early.role_name}) == 0


def test_schema_keeps_money_exact_and_time_zoned_and_every_tenant_table_isolated(database):
    with store.owner_engine().connect() as connection:
        types = connection.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        ).all()
        forced = dict(
            connection.execute(
                text(
                    "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class "
                    "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
                )
            ).all()
        )
        tenant_ids = connection.execute(
            text(
                "SELECT table_name, is_nullable, column_default FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name = 'tenant_id'"
            )
        ).all()
    assert not [row for row in types if row.data_type in ("real", "double precision", "money")]
    assert {row.data_type for row in types if "timestamp" in row.data_type} == {"timestamp with time zone"}
    for column in (
        "price",
        "amount",
        "filled",
        "fee",
        "balance",
        "equity",
        "pnl",
        "current_balance",
        "total_pnl",
        "leverage",
    ):
        assert {row.data_type for row in types if row.column_name == column} == {"numeric"}, column
    assert all(forced[table] for table in [*TENANT_TABLES, "tenants"])
    assert sorted(row.table_name for row in tenant_ids) == sorted(TENANT_TABLES)
    assert all(row.is_nullable == "NO" and row.column_default == "current_tenant_id()" for row in tenant_ids)


def _account(tenant: store.Tenant, label: str) -> int:
    with store.owner_session() as s:
        if s.get(store.TenantDataKey, (tenant.id, 1)) is None:
            s.add(store.TenantDataKey(tenant_id=tenant.id, version=1, wrapped_key=b"w", master_key_version=1))
            s.flush()
        account = store.ExchangeAccount(
            tenant_id=tenant.id,
            exchange="binance",
            label=label,
            api_key_ct=b"c",
            secret_ct=b"c",
            key_hint="ab12…9f",
            data_key_version=1,
        )
        s.add(account)
        s.flush()
        return account.id


def test_a_strategy_that_ran_live_is_immutable(database):
    tenant = store.create_tenant("trader")
    with store.tenant_session("trader") as s:
        strategy = store.Strategy(name="dip", template="ema_reversal", params={"depth": 0.05})
        s.add(strategy)
        s.flush()
        s.add(store.TradingSession(strategy_id=strategy.id, exchange="paper", symbol="BTC/USDT", status="running"))
    with store.tenant_session("trader") as s:
        s.execute(update(store.Strategy).values(params={"depth": 0.04}))  # paper trading locks nothing
        s.add(
            store.TradingSession(
                strategy_id=strategy.id,
                exchange_account_id=_account(tenant, "main"),
                exchange="binance",
                symbol="BTC/USDT",
                status="running",
            )
        )
    for change in (
        {"params": {"depth": 0.03}},
        {"risk_limits": {"max_loss": 1}},
        {"is_locked": False},
        {"template": "channel"},
    ):
        with pytest.raises(IntegrityError, match="has run live and is immutable"):
            with store.tenant_session("trader") as s:
                s.execute(update(store.Strategy).where(store.Strategy.id == strategy.id).values(**change))
    with store.tenant_session("trader") as s:
        s.add(
            store.Strategy(
                name="dip", template="ema_reversal", params={"depth": 0.03}, version=2, parent_id=strategy.id
            )
        )
        versions = s.execute(
            select(store.Strategy.version, store.Strategy.params, store.Strategy.is_locked).order_by(
                store.Strategy.version
            )
        ).all()
    assert versions == [(1, {"depth": 0.04}, True), (2, {"depth": 0.03}, False)]


# --- tenants and the CLI ---------------------------------------------------------------------


def test_tenant_commands(database, capsys):
    assert main(["tenant", "add", "dave"]) == 0
    assert "created tenant dave" in capsys.readouterr().out
    assert main(["tenant", "list"]) == 0
    assert f"dave\t{database.name}_dave\t" in capsys.readouterr().out
    assert main(["db", "url", "--tenant", "dave"]) == 0
    dave_url = capsys.readouterr().out.strip()
    with psycopg.connect(database.server.libpq_url(dave_url)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == f"{database.name}_dave"
    assert main(["db", "url"]) == 0
    assert capsys.readouterr().out.strip() == database.url

    with store.tenant_session("dave") as s:
        strategy = store.Strategy(name="x", template="channel")
        s.add(strategy)
        s.flush()
        s.add_all(
            [
                store.TradingSession(strategy_id=strategy.id, exchange="paper", symbol="BTC/USDT", status=status)
                for status in ("running", "paused", "error")
            ]
        )
    with psycopg.connect(database.server.libpq_url(dave_url), autocommit=True) as open_connection:
        assert main(["tenant", "remove", "dave"]) == 0
        with pytest.raises(psycopg.OperationalError):
            open_connection.execute("SELECT 1")  # terminated
    assert "removed tenant dave" in capsys.readouterr().out
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(database.server.libpq_url(dave_url))
    with store.owner_session() as s:
        statuses = s.execute(
            select(store.TradingSession.status, store.TradingSession.status_message)
            .join(store.Tenant, store.Tenant.id == store.TradingSession.tenant_id)
            .where(store.Tenant.name == "dave")
            .order_by(store.TradingSession.id)
        ).all()
    assert [status for status, _ in statuses] == ["stopped", "stopped", "error"]
    assert "tenant removed" in statuses[0][1]
    assert main(["tenant", "list"]) == 0
    assert "dave" not in capsys.readouterr().out
    assert main(["tenant", "list", "--all"]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["db", "url", "--tenant", "dave"]) == 2
    assert "tenant 'dave' was removed" in capsys.readouterr().err
    assert main(["tenant", "add", "dave"]) == 2
    assert "never reused" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["Dave", "1abc", "a-b", "x'; DROP TABLE tenants; --", "", "a" * 33, "é"])
def test_tenant_names_are_lowercase_identifiers(database, capsys, name):
    assert main(["tenant", "add", name]) == 2
    assert f"tenant name {name!r} is invalid" in capsys.readouterr().err
    with pytest.raises(TenantError, match="invalid"):
        store.tenant_url(name)


def test_tenant_commands_ask_for_migrations_on_an_empty_database(empty_database, capsys):
    assert main(["tenant", "list"]) == 2
    assert "run `workbench db upgrade`" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert f"revision {store.head_revision()}" in capsys.readouterr().out


def test_db_start_refuses_when_an_external_url_is_set(database, capsys):
    assert main(["db", "stop"]) == 2
    assert "WORKBENCH_DATABASE_URL is set" in capsys.readouterr().err


def test_notebook_session_is_the_local_tenant_or_the_tenant_of_the_process(database, monkeypatch):
    assert store.current_tenant().name == store.LOCAL_TENANT
    with store.session() as s:
        s.add(store.Strategy(name="nb", template="channel"))
    erin = store.create_tenant("erin")
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url("erin").replace("+psycopg", ""))
    assert store.current_tenant().id == erin.id
    with store.session() as s:
        assert s.scalars(select(store.Strategy)).all() == []  # local's strategy is not erin's
    store.remove_tenant("erin")
    store.dispose()
    with pytest.raises(Exception, match="not permitted to log in"):
        store.current_tenant()


def test_opener_is_the_operators_on_a_migrated_database_and_the_tenants_with_a_tenant_url(database, monkeypatch):
    monkeypatch.delenv(store.TENANT_URL_ENV, raising=False)
    assert store.opener() is store.owner_session
    store.create_tenant("fred")
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url("fred"))
    opener = store.opener()
    assert opener is store.session
    with opener() as s:
        assert s.scalar(select(text("current_user"))) == f"{database.name}_fred"


def test_opener_asks_for_migrations_on_an_unmigrated_database(empty_database, monkeypatch):
    monkeypatch.delenv(store.TENANT_URL_ENV, raising=False)
    with pytest.raises(DatabaseError, match="schema revision none, .*run `workbench db upgrade`"):
        store.opener()


def test_an_idle_tenant_connection_is_closed_and_the_next_session_connects_again(database, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB_IDLE_CLOSE", "1")
    store.dispose()
    store.create_tenant("gina")
    role = f"{database.name}_gina"

    def held() -> int:
        with store.owner_session() as s:
            return s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE usename = :role"), {"role": role})

    for _ in range(3):  # a session at a time reuses the one pooled connection
        with store.tenant_session("gina") as s:
            assert s.scalar(select(text("current_user"))) == role
    assert held() == 1
    deadline = time.monotonic() + 10
    while held() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert held() == 0
    with store.tenant_session("gina") as s:  # connects again
        assert s.scalar(select(text("current_user"))) == role
        assert held() == 1  # in use: never closed under a session
        time.sleep(2)
        assert held() == 1


def test_the_idle_delay_must_be_seconds(database, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB_IDLE_CLOSE", "soon")
    store.dispose()
    with pytest.raises(DatabaseError, match="WORKBENCH_DB_IDLE_CLOSE='soon' is not a number of seconds"):
        store.tenant_engine(store.create_tenant("hana"))
