"""Tenant isolation is enforced by PostgreSQL, not by the library.

Tenant A connects with its own role over a raw psycopg connection and runs arbitrary SQL
against every tenant-owned table, aiming at tenant B's rows; then the same through the
library's tenant sessions. Runs on every backend of the ``database`` fixture.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy import make_url, select, update
from sqlalchemy.exc import ProgrammingError

from tests._certificates import certify_strategy
from workbench import store
from workbench.store._server import OWNER
from workbench.store.models import (
    Base,
    CertificateRequest,
    DashboardShare,
    ExchangeKeyReview,
    KeyUseRecord,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
)

TENANT_TABLES = [table.name for table in Base.metadata.sorted_tables if "tenant_id" in table.c]
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _seed(tenant: store.Tenant, share_with: str | None = None) -> dict[str, int]:
    """One row in every tenant-owned table for ``tenant``, written by the owner; their ids.
    ``share_with``: the tenant the session's dashboard is shared with (a share shows the
    viewer the owner's session, so only one side of a pair shares)."""
    with store.owner_session() as s:

        def add(row):
            s.add(row)
            s.flush()
            return row

        owner = {"tenant_id": tenant.id}
        strategy = add(store.Strategy(**owner, name="dip", template="ema_reversal", params={"depth": 0.05}))
        add(store.TenantDataKey(**owner, version=1, wrapped_key=b"wrapped", master_key_version=1))
        account = add(
            store.ExchangeAccount(
                **owner,
                exchange="binance",
                label="main",
                api_key_ct=b"ct",
                secret_ct=b"ct",
                key_hint="ab12…9f",
                data_key_version=1,
            )
        )
        trading = add(
            store.TradingSession(
                **owner,
                strategy_id=strategy.id,
                exchange_account_id=account.id,
                exchange="binance",
                symbol="BTC/USDT",
                status="paused",
                current_balance=Decimal("1000.50"),
            )
        )
        order = add(
            store.Order(
                **owner,
                session_id=trading.id,
                client_order_id="wb-1",
                side="buy",
                type="limit",
                price=Decimal("60000.1"),
                amount=Decimal("0.01"),
            )
        )
        s.add(
            store.Fill(
                **owner,
                order_id=order.id,
                exchange_trade_id="t1",
                price=Decimal("60000.1"),
                amount=Decimal("0.01"),
                fee=Decimal("0.06"),
                fee_currency="USDT",
                ts=NOW,
            )
        )
        s.add(
            store.EquitySnapshot(
                **owner,
                session_id=trading.id,
                ts=NOW,
                balance=Decimal("1000.5"),
                equity=Decimal("1001"),
                position=Decimal("0.01"),
                pnl=Decimal("0.5"),
            )
        )
        s.add(
            store.FundingPayment(
                **owner,
                session_id=trading.id,
                exchange_payment_id="f1",
                amount=Decimal("-0.06"),
                currency="USDT",
                ts=NOW,
            )
        )
        s.add(
            store.Trial(
                **owner,
                template="channel",
                family="channel",
                data_hash="ab" * 32,
                data_start=NOW,
                data_end=NOW,
                bars=1,
                combinations=10,
                what="sweep",
            )
        )
        s.add(
            store.BacktestResult(
                **owner,
                strategy_id=strategy.id,
                template="ema_reversal",
                params={"depth": 0.05},
                metrics={"sharpe": 1.2},
            )
        )
        certify_strategy(tenant.id, strategy.id, db=s)  # the session trades on binance: the gate wants one
        s.add(CertificateRequest(**owner, strategy_id=strategy.id, dataset="bundled:btc-usd-1h"))
        notebook = add(
            store.LiveNotebook(
                **owner, session_id=trading.id, source_path="live.ipynb", content="{}", schedule="*/5 * * * *"
            )
        )
        s.add(store.NotebookRun(**owner, live_notebook_id=notebook.id, scheduled_for=NOW))
        paper = add(store.PaperAccountRow(**owner, account="session-1", currency="USDT", cash=Decimal("1000")))
        s.add(
            store.PaperPositionRow(
                **owner,
                account_id=paper.id,
                symbol="BTC/USDT",
                units=Decimal("0.01"),
                entry=Decimal("60000"),
                margin=Decimal("600"),
                leverage=Decimal(1),
            )
        )
        s.add(
            store.PaperOrderRow(
                **owner,
                account_id=paper.id,
                id="P1",
                symbol="BTC/USDT",
                side="buy",
                type="limit",
                amount=Decimal("0.01"),
                price=Decimal("60000"),
                filled=Decimal("0.01"),
                status="closed",
                ts=NOW,
            )
        )
        s.add(
            store.PaperFillRow(
                **owner,
                account_id=paper.id,
                id="T2",
                seq=0,
                order_id="P1",
                symbol="BTC/USDT",
                side="buy",
                amount=Decimal("0.01"),
                price=Decimal("60000"),
                fee=Decimal("0.6"),
                ts=NOW,
            )
        )
        channel = add(NotificationChannel(**owner, name="phone", kind="telegram", config={"chat_id": "1"}))
        event = add(NotificationEvent(**owner, session_id=trading.id, kind="message", dedup_key="m1"))
        s.add(NotificationDelivery(**owner, event_id=event.id, channel_id=channel.id))
        s.add(ExchangeKeyReview(**owner, account_id=account.id, can_withdraw=False, ip_restricted=True))
        s.add(
            KeyUseRecord(
                **owner, account_id=account.id, exchange="binance", key_hint="ab12…9f", purpose="check", actor="test"
            )
        )
        if share_with:
            s.add(DashboardShare(**owner, session_id=trading.id, viewer=share_with, owner=tenant.name))
        return {
            "strategies": strategy.id,
            "exchange_accounts": account.id,
            "trading_sessions": trading.id,
            "orders": order.id,
            "live_notebooks": notebook.id,
        }


@pytest.fixture(scope="module")
def tenants(database):
    """Tenants alice and bob, each with a row in every tenant-owned table."""
    made = {name: store.create_tenant(name) for name in ("alice", "bob")}
    ids = {"alice": _seed(made["alice"], share_with="bob"), "bob": _seed(made["bob"])}
    return {name: (tenant, ids[name]) for name, tenant in made.items()}


def _snapshot(conn: psycopg.Connection) -> dict[str, list]:
    """Every row the connection can see, per table it may read, in a stable order."""
    readable = [
        table
        for table in ["tenants", *TENANT_TABLES]
        if conn.execute("SELECT has_table_privilege(current_user, %s, 'SELECT')", [table]).fetchone()[0]
    ]
    return {
        table: sorted(
            json.dumps(row, default=str)
            for (row,) in conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t").format(sql.Identifier(table)))
        )
        for table in readable
    }


def _connect(database, name: str) -> psycopg.Connection:
    return psycopg.connect(database.server.libpq_url(store.tenant_url(name)), autocommit=True)


def _owner(database) -> psycopg.Connection:
    return psycopg.connect(database.server.libpq_url(database.url), autocommit=True)


@pytest.fixture
def alice(database, tenants):
    with _connect(database, "alice") as conn:
        yield conn


def test_a_tenant_sees_exactly_its_own_rows(alice, tenants):
    alice_id = tenants["alice"][0].id
    seen = _snapshot(alice)
    assert [json.loads(row)["name"] for row in seen["tenants"]] == ["alice"]
    # the vault's data keys are the trusted side's alone
    assert sorted(set(TENANT_TABLES) - set(seen)) == ["tenant_data_keys"]
    for table in set(TENANT_TABLES) & set(seen):
        rows = [json.loads(row) for row in seen[table]]
        assert len(rows) == 1 and rows[0]["tenant_id"] == alice_id, table
    assert alice.execute("SELECT current_tenant_id()").fetchone()[0] == alice_id


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_update_and_delete_aimed_at_another_tenant_change_nothing(database, alice, tenants, table):
    bob_id = tenants["bob"][0].id
    with _owner(database) as owner:
        before = _snapshot(owner)
    table_id = sql.Identifier(table)
    statements = [
        sql.SQL("UPDATE {} SET tenant_id = tenant_id WHERE tenant_id = %s").format(table_id),
        sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(table_id),
    ]
    for statement in statements:
        try:
            assert alice.execute(statement, [bob_id]).rowcount == 0
        except errors.InsufficientPrivilege:
            pass  # tenants lack this privilege on this table altogether
    with _owner(database) as owner:
        assert _snapshot(owner) == before


def test_rows_cannot_be_written_into_another_tenant(alice, tenants):
    bob, bob_ids = tenants["bob"]
    alice_ids = tenants["alice"][1]
    refused = [
        ("INSERT INTO strategies (tenant_id, name, template) VALUES (%s, 'x', 'channel')", [bob.id]),
        ("UPDATE strategies SET tenant_id = %s WHERE id = %s", [bob.id, alice_ids["strategies"]]),
        ("UPDATE orders SET tenant_id = %s", [bob.id]),
    ]
    for statement, params in refused:
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            alice.execute(statement, params)
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table tenant_data_keys"):
        alice.execute(
            "INSERT INTO tenant_data_keys (tenant_id, version, wrapped_key, master_key_version) VALUES (%s, 9, 'x', 1)",
            [bob.id],
        )
    # own tenant_id (the default), but pointing at bob's rows: the composite keys refuse
    dangling = [
        (
            "INSERT INTO trading_sessions (strategy_id, exchange, symbol) VALUES (%s, 'binance', 'BTC/USDT')",
            [bob_ids["strategies"]],
        ),
        (
            "INSERT INTO orders (session_id, client_order_id, side, type, amount) VALUES (%s, 'x', 'buy', 'market', 1)",
            [bob_ids["trading_sessions"]],
        ),
        ("UPDATE trading_sessions SET exchange_account_id = %s", [bob_ids["exchange_accounts"]]),
        (
            "INSERT INTO funding_payments (session_id, exchange_payment_id, amount, ts) VALUES (%s, 'x', 1, now())",
            [bob_ids["trading_sessions"]],
        ),
    ]
    for statement, params in dangling:
        with pytest.raises(errors.ForeignKeyViolation):
            alice.execute(statement, params)
    # inserting without naming a tenant files the row under alice
    row = alice.execute(
        "INSERT INTO strategies (name, template) VALUES ('mine', 'channel') RETURNING tenant_id"
    ).fetchone()
    assert row[0] == tenants["alice"][0].id
    alice.execute("DELETE FROM strategies WHERE name = 'mine'")


def test_a_tenant_cannot_become_another_role(database, alice, tenants):
    bob_role = tenants["bob"][0].role_name
    owner_role = make_url(database.url).username
    attempts = [
        sql.SQL("SET ROLE {}").format(sql.Identifier(bob_role)),
        sql.SQL("SET ROLE {}").format(sql.Identifier(owner_role)),
        sql.SQL("SET ROLE postgres"),
        sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(bob_role)),
        sql.SQL("SELECT set_config('role', {}, false)").format(sql.Literal(bob_role)),
        sql.SQL("SELECT set_config('session_authorization', {}, false)").format(sql.Literal(bob_role)),
        sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(tenants["alice"][0].role_name)),
        sql.SQL("ALTER TABLE strategies NO FORCE ROW LEVEL SECURITY"),
        sql.SQL("DROP POLICY tenant_rows ON strategies"),
        sql.SQL("CREATE ROLE intruder LOGIN"),
        sql.SQL("CREATE TABLE public.mine (x int)"),
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(bob_role), sql.Identifier(tenants["alice"][0].role_name)),
    ]
    for attempt in attempts:
        with pytest.raises(errors.InsufficientPrivilege):
            alice.execute(attempt)
    alice.execute("RESET ROLE")
    alice.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenants["bob"][0].id)])
    assert alice.execute("SELECT current_user, current_tenant_id()").fetchone() == (
        tenants["alice"][0].role_name,
        tenants["alice"][0].id,
    )
    assert alice.execute("SELECT count(*) FROM strategies WHERE tenant_id <> current_tenant_id()").fetchone()[0] == 0
    assert (
        alice.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        == (False,) * 5
    )
    assert (
        alice.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = current_user"
        ).fetchone()[0]
        == 0
    )


def test_library_sessions_are_isolated_the_same_way(tenants):
    alice, _ = tenants["alice"]
    bob, bob_ids = tenants["bob"]
    with store.tenant_session("alice") as s:
        for model in (
            store.Strategy,
            store.ExchangeAccount,
            store.TradingSession,
            store.Order,
            store.Fill,
            store.EquitySnapshot,
            store.BacktestResult,
            store.LiveNotebook,
            store.NotebookRun,
        ):
            rows = s.scalars(select(model)).all()
            assert [row.tenant_id for row in rows] == [alice.id], model.__name__
        assert s.get(store.Strategy, bob_ids["strategies"]) is None
        changed = s.execute(
            update(store.TradingSession).where(store.TradingSession.tenant_id == bob.id).values(status="stopped")
        )
        assert changed.rowcount == 0
    with pytest.raises(ProgrammingError, match="row-level security"):
        with store.tenant_session("alice") as s:
            s.add(store.Strategy(tenant_id=bob.id, name="planted", template="channel"))
    with pytest.raises(ProgrammingError, match="permission denied for table tenant_data_keys"):
        with store.tenant_session("alice") as s:
            s.scalars(select(store.TenantDataKey)).all()
    with store.owner_session() as s:
        assert s.scalar(select(store.Strategy).where(store.Strategy.name == "planted")) is None
        assert s.get(store.TradingSession, bob_ids["trading_sessions"]).status == "paused"


def test_creating_a_tenant_mid_test_changes_nothing_for_the_others(database, tenants):
    with _connect(database, "alice") as a, _connect(database, "bob") as b:
        before = _snapshot(a), _snapshot(b)
        carol = store.create_tenant("carol")
        assert (_snapshot(a), _snapshot(b)) == before
    with store.tenant_session("carol") as s:
        s.add(store.Strategy(name="carols", template="channel"))
    with _connect(database, "carol") as c:
        seen = _snapshot(c)
        assert [json.loads(row)["name"] for row in seen["strategies"]] == ["carols"]
        assert all(not seen[table] for table in TENANT_TABLES if table in seen and table != "strategies")
    with _connect(database, "alice") as a, _connect(database, "bob") as b:
        assert (_snapshot(a), _snapshot(b)) == before
    assert carol.role_name == f"{database.name}_carol"


def test_a_tenant_needs_its_own_password(pg_server, database, tenants):
    if pg_server.backend != "embedded":
        pytest.skip("the machine's server trusts loopback connections; the embedded one never does")
    alice_url = store.tenant_url("alice")
    bob_role = tenants["bob"][0].role_name
    for role in (bob_role, OWNER, "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg_server.libpq_url(alice_url.replace(tenants["alice"][0].role_name, role, 1)))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=str(pg_server.embedded.socket_dir), dbname=database.name, user=bob_role)
