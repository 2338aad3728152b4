"""Shared dashboards: a share is a row-level-security grant, and the page a viewer opens is
rendered by the workbench service from what the viewer's own role may read.

Database level (raw SQL as each tenant's role): before a share the viewer reads nothing of
the owner; after it exactly the shared session, its equity, orders, fills and runs (never
the owner's live notebooks, strategies, keys, channels or other sessions); a third tenant
reads nothing; the viewer cannot forge, change or remove shares; revoking takes it all back.
Through a real hub: the viewer gets the page, with a nonce Content-Security-Policy, and no
way into the owner's dashboard server or its kernel websocket; the owner's own Voila
dashboard runs with IPython and Jupyter folders pinned to the package.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from workbench import store
from workbench.hub import _records
from workbench.hub._records import NotFound
from workbench.scheduler import dashboard_page
from workbench.store.models import EquitySnapshot, Fill, LiveNotebook, NotebookRun, Order, Strategy, TradingSession

OWNER_TABLES = (
    "trading_sessions",
    "equity_snapshots",
    "orders",
    "fills",
    "notebook_runs",
    "live_notebooks",
    "strategies",
    "exchange_accounts",
    "notification_channels",
    "dashboard_shares",
)


def _tenant(prefix: str) -> str:
    name = f"{prefix}{secrets.token_hex(3)}"
    store.create_tenant(name)
    return name


def seed_session(
    tenant: str,
    symbol: str = "BTC/USD",
    *,
    status_message: str | None = None,
    error: str = "cell 2: ValueError: bad",
    points: int = 4,
) -> int:
    """A trading session of ``tenant`` with equity points, an open order with a fill, a live
    notebook and a failed run (written as the owner role, as a worker would)."""
    with store.owner_session() as s:
        tenant_id = s.scalar(select(store.Tenant.id).where(store.Tenant.name == tenant))
        strategy = Strategy(tenant_id=tenant_id, name=f"s{secrets.token_hex(3)}", template="channel", params={})
        s.add(strategy)
        s.flush()
        trading = TradingSession(
            tenant_id=tenant_id,
            strategy_id=strategy.id,
            exchange="paper",
            symbol=symbol,
            status="running",
            status_message=status_message,
        )
        s.add(trading)
        s.flush()
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(points):
            s.add(
                EquitySnapshot(
                    tenant_id=tenant_id,
                    session_id=trading.id,
                    ts=start + timedelta(hours=i),
                    balance=10_000,
                    equity=10_000 + 25 * i,
                    position=i,
                )
            )
        order = Order(
            tenant_id=tenant_id,
            session_id=trading.id,
            client_order_id=f"wb-{secrets.token_hex(4)}",
            side="buy",
            type="limit",
            price=100,
            amount=1,
            status="open",
        )
        s.add(order)
        s.flush()
        s.add(
            Fill(
                tenant_id=tenant_id,
                order_id=order.id,
                exchange_trade_id=secrets.token_hex(4),
                price=100,
                amount=0.5,
                ts=start,
            )
        )
        live = LiveNotebook(
            tenant_id=tenant_id,
            session_id=trading.id,
            source_path="/home/x/live.ipynb",
            content='{"cells": ["SECRET STRATEGY CODE"]}',
            schedule="candle:5m",
            status="active",
        )
        s.add(live)
        s.flush()
        s.add(
            NotebookRun(
                tenant_id=tenant_id, live_notebook_id=live.id, status="failed", scheduled_for=start, error=error
            )
        )
        return trading.id


def visible(tenant: str) -> dict[str, set]:
    """What ``tenant``'s own role reads of each table, by raw SQL: {table: {ids or keys}}."""
    with store.session_scope(store.engine_for(store.tenant_url(tenant))) as db:
        found = {}
        for table in OWNER_TABLES:
            key = "session_id, viewer" if table == "dashboard_shares" else "id"
            found[table] = {tuple(row) for row in db.execute(text(f"SELECT {key} FROM {table}"))}
        return found


def _owner_snapshot(session_id: int) -> list:
    """Every row of the session and its children, as the owner role sees them."""
    with store.owner_session() as db:
        return [
            sorted(map(tuple, db.execute(text(query), {"s": session_id})))
            for query in (
                "SELECT id, symbol, status, status_message FROM trading_sessions WHERE id = :s",
                "SELECT id, equity FROM equity_snapshots WHERE session_id = :s",
                "SELECT id, status, amount FROM orders WHERE session_id = :s",
                "SELECT f.id, f.amount FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.session_id = :s",
                "SELECT id, content, status FROM live_notebooks WHERE session_id = :s",
                "SELECT r.id, r.status, r.error FROM notebook_runs r JOIN live_notebooks l ON l.id = r.live_notebook_id "
                "WHERE l.session_id = :s",
                "SELECT session_id, viewer FROM dashboard_shares WHERE session_id = :s",
            )
        ]


def _ids(session_id: int) -> dict[str, set]:
    with store.owner_session() as db:
        one = lambda query: {(v,) for v in db.scalars(text(query), {"s": session_id})}  # noqa: E731
        return {
            "trading_sessions": {(session_id,)},
            "equity_snapshots": one("SELECT id FROM equity_snapshots WHERE session_id = :s"),
            "orders": one("SELECT id FROM orders WHERE session_id = :s"),
            "fills": one("SELECT f.id FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.session_id = :s"),
            "notebook_runs": one(
                "SELECT r.id FROM notebook_runs r JOIN live_notebooks l "
                "ON l.id = r.live_notebook_id WHERE l.session_id = :s"
            ),
        }


def test_a_share_lets_the_viewer_read_that_session_and_nothing_else(database):
    owner, viewer, stranger = _tenant("own"), _tenant("view"), _tenant("str")
    shared, private = seed_session(owner), seed_session(owner, "ETH/USD")
    before = visible(viewer)
    assert all(rows == set() for rows in before.values()), before

    _records.share(owner, shared, viewer)
    _records.share(owner, shared, viewer)  # again: no change
    assert _records.shares(owner, shared) == [viewer]
    seen, expected = visible(viewer), _ids(shared)
    for table, ids in expected.items():
        assert seen[table] == ids, table
    assert not seen["trading_sessions"] & _ids(private)["trading_sessions"]
    for table in ("live_notebooks", "strategies", "exchange_accounts", "notification_channels"):
        assert seen[table] == set(), table  # the owner's notebook code, strategies and keys stay the owner's
    assert seen["dashboard_shares"] == {(shared, viewer)}
    assert all(rows == set() for rows in visible(stranger).values())
    assert _records.shared_with(viewer) == [{"owner": owner, "session": shared}]
    assert _records.shared_with(stranger) == []

    _records.unshare(owner, shared, viewer)
    assert all(rows == set() for rows in visible(viewer).values())
    with pytest.raises(NotFound, match="is not shared with"):
        _records.unshare(owner, shared, viewer)


def test_the_viewer_cannot_forge_change_or_remove_shares(database):
    owner, viewer, stranger = _tenant("own"), _tenant("view"), _tenant("str")
    shared, private = seed_session(owner), seed_session(owner, "ETH/USD")
    _records.share(owner, shared, viewer)
    kept = _owner_snapshot(shared), _owner_snapshot(private)
    engine = store.engine_for(store.tenant_url(viewer))
    owner_id = store.list_tenants() and next(t.id for t in store.list_tenants() if t.name == owner)
    attacks = [  # each must fail or touch nothing
        (
            "INSERT INTO dashboard_shares (tenant_id, owner, session_id, viewer) VALUES (:o, :on, :p, :v)",
            {"o": owner_id, "on": owner, "p": private, "v": viewer},
        ),
        ("INSERT INTO dashboard_shares (session_id, viewer) VALUES (:p, :v)", {"p": private, "v": stranger}),
        (
            "INSERT INTO dashboard_shares (owner, session_id, viewer) VALUES (:on, :p, :v)",
            {"on": owner, "p": private, "v": stranger},
        ),
        ("UPDATE dashboard_shares SET session_id = :p", {"p": private}),
        ("UPDATE trading_sessions SET status = 'stopped', symbol = 'HACKED'", {}),
        ("UPDATE orders SET status = 'canceled'", {}),
        ("DELETE FROM equity_snapshots", {}),
        ("DELETE FROM fills", {}),
        ("DELETE FROM notebook_runs", {}),
        ("UPDATE live_notebooks SET content = 'x'", {}),
    ]
    refused = 0
    for statement, values in attacks:
        try:
            with store.session_scope(engine) as db:
                changed = db.execute(text(statement), values).rowcount
            assert changed == 0, statement
        except (ProgrammingError, DBAPIError) as exc:
            assert re.search(r"row-level security|permission denied|violates", str(exc)), exc
            refused += 1
    assert refused >= 4
    # the definer function answers for the connected role only: nothing about others' notebooks
    with store.session_scope(engine) as db:
        live_ids = [tuple(r) for r in db.execute(text("SELECT tenant_id, live_notebook_id FROM notebook_runs"))]
    assert live_ids
    with store.session_scope(store.engine_for(store.tenant_url(stranger))) as db:
        assert all(
            db.scalar(text("SELECT shared_live_session(:t, :l)"), {"t": t, "l": lid}) is None for t, lid in live_ids
        )
    assert (_owner_snapshot(shared), _owner_snapshot(private)) == kept
    assert visible(viewer)["dashboard_shares"] == {(shared, viewer)}


def test_sharing_checks_the_owner_and_the_viewer(database):
    owner, viewer = _tenant("own"), _tenant("view")
    theirs = seed_session(viewer)
    with pytest.raises(NotFound, match="has no trading session"):
        _records.share(owner, theirs, owner + "x")
    with pytest.raises(NotFound, match="has no trading session"):
        _records.share(owner, theirs, viewer)  # not the caller's session
    mine = seed_session(owner)
    with pytest.raises(NotFound, match="no tenant named 'nobody'"):
        _records.share(owner, mine, "nobody")
    with pytest.raises(NotFound, match="shares no session"):
        _records.shared_owner_id(viewer, owner, mine)
    assert _records.shares(owner, mine) == []


def test_the_shared_page_is_rendered_from_the_viewers_rows(database):
    owner, viewer = _tenant("own"), _tenant("view")
    session_id = seed_session(owner, "SOL/USD", error="cell 1: <script>window.pwned=1</script>\ntrace")
    owner_id = next(t.id for t in store.list_tenants() if t.name == owner)
    as_viewer = dict(
        opener=lambda: store.tenant_session(viewer), owner_id=owner_id, nonce="N0NCE", bokeh_url="/s/bokeh.min.js"
    )
    assert dashboard_page(session_id, **as_viewer) is None  # not shared: the viewer's role sees nothing
    _records.share(owner, session_id, viewer)
    page = dashboard_page(session_id, **as_viewer)
    assert f"Session #{session_id}: SOL/USD on paper" in page and "4 equity points" in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "<script>window.pwned" not in page
    assert "trace" not in page and "SECRET STRATEGY CODE" not in page
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and all("nonce='N0NCE'" in attributes for attributes in scripts)
    assert "http-equiv='refresh'" in page
    # another owner's id for the same session: nothing
    assert dashboard_page(session_id, **{**as_viewer, "owner_id": owner_id + 1000}) is None
