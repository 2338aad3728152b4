"""Saved strategies on PostgreSQL: versions, clones, validation, deletion rules, isolation."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

import workbench as wb
from workbench import store


@pytest.fixture
def db(empty_database):
    """A fresh database at head; the notebook side acts as the single-user tenant 'local'."""
    store.upgrade()
    yield empty_database
    store.dispose()


def test_save_load_and_list(db):
    saved = wb.save_strategy("dip buyer", "ema_reversal", {"leverage": 3}, {"max_daily_loss": 200})
    assert (saved.name, saved.version, saved.template) == ("dip buyer", 1, "ema_reversal")
    assert saved.params == wb.get_template("ema_reversal").validate({"leverage": 3})  # defaults filled in
    assert saved.risk_limits == {"max_position_size": None, "max_daily_loss": 200.0}
    assert wb.load_strategy("dip buyer") == saved == wb.load_strategy(saved.id)
    table = wb.list_strategies()
    assert table[["name", "version", "template"]].values.tolist() == [["dip buyer", 1, "ema_reversal"]]


def test_saving_a_name_again_adds_a_version(db):
    first = wb.save_strategy("breakout", "channel", {"entry_window": 20})
    second = wb.save_strategy("breakout", {"type": "channel", "params": {"entry_window": 40}, "risk_limits": {}})
    assert second.version == 2 and second.parent_id == first.id
    assert wb.load_strategy("breakout").params["entry_window"] == 40
    assert wb.load_strategy("breakout", version=1).params["entry_window"] == 20
    assert len(wb.list_strategies()) == 1 and len(wb.list_strategies(all_versions=True)) == 2


def test_invalid_parameters_are_refused_before_anything_is_stored(db):
    with pytest.raises(wb.ParameterError, match="parameter 'entry_window': 0 is not allowed"):
        wb.save_strategy("bad", "channel", {"entry_window": 0})
    with pytest.raises(wb.TemplateError, match="unknown template 'grid'"):
        wb.save_strategy("bad", "grid")
    with pytest.raises(wb.StrategyError, match="non-empty name"):
        wb.save_strategy("  ", "channel")
    assert wb.list_strategies().empty


def test_clone_copies_with_changes_and_remembers_the_origin(db):
    origin = wb.save_strategy("quotes", "market_making", {"spread": 0.5})
    clone = wb.clone_strategy("quotes", "wide quotes", {"spread": 1.5})
    assert clone.parent_id == origin.id and clone.version == 1
    assert clone.params == {**origin.params, "spread": 1.5}
    with pytest.raises(wb.StrategyError, match="'quotes' exists already"):
        wb.clone_strategy("wide quotes", "quotes")


def test_backtest_of_a_saved_strategy_uses_its_parameters_and_limits(db):
    candles = wb.load_candles().iloc[-1500:]
    saved = wb.save_strategy("c", "channel", {"entry_window": 30}, {"max_position_size": 2000})
    assert (
        saved.backtest(candles).metrics
        == wb.backtest("channel", candles, {"entry_window": 30}, risk={"max_position_size": 2000}).metrics
    )


def _session(strategy_id: int, status: str) -> int:
    tenant = store.current_tenant()
    with store.owner_session() as scope:
        row = store.TradingSession(
            tenant_id=tenant.id, strategy_id=strategy_id, exchange="paper", symbol="BTC/USDT", status=status
        )
        scope.add(row)
        scope.flush()
        return row.id


def test_delete_is_refused_while_a_live_session_uses_the_strategy(db):
    saved = wb.save_strategy("live one", "channel")
    session_id = _session(saved.id, "running")
    with pytest.raises(wb.StrategyError, match=rf"used by live session #{session_id} \(running\); stop the session"):
        wb.delete_strategy("live one")
    with store.owner_session() as scope:
        scope.execute(update(store.TradingSession).values(status="stopped"))
    with pytest.raises(wb.StrategyError, match="has trading history"):
        wb.delete_strategy("live one")
    assert wb.load_strategy("live one") == saved


def test_delete_removes_every_version(db):
    wb.save_strategy("gone", "channel")
    wb.save_strategy("gone", "channel", {"entry_window": 10})
    wb.delete_strategy("gone")
    assert wb.list_strategies(all_versions=True).empty
    with pytest.raises(wb.StrategyError, match="no saved strategy 'gone'"):
        wb.load_strategy("gone")


def test_a_locked_strategy_cannot_be_edited_only_versioned(db):
    saved = wb.save_strategy("frozen", "channel")
    with store.owner_session() as scope:
        scope.execute(update(store.Strategy).where(store.Strategy.id == saved.id).values(is_locked=True))
    with pytest.raises(IntegrityError, match="immutable"), store.session() as scope:
        scope.execute(update(store.Strategy).where(store.Strategy.id == saved.id).values(params={"x": 1}))
    assert wb.save_strategy("frozen", "channel", {"entry_window": 99}).version == 2


def test_tenants_see_only_their_own_strategies(db, monkeypatch):
    for name in ("alice", "bob"):
        store.create_tenant(name)
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url("alice"))
    mine = wb.save_strategy("secret sauce", "ema_reversal", {"leverage": 7})
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url("bob"))
    assert wb.list_strategies().empty
    with pytest.raises(wb.StrategyError, match="no saved strategy #"):
        wb.load_strategy(mine.id)
    with pytest.raises(wb.StrategyError):
        wb.delete_strategy(mine.id)
    wb.save_strategy("secret sauce", "channel")  # bob's own, same name
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url("alice"))
    assert wb.load_strategy("secret sauce") == mine


def test_the_editor_saves_to_your_strategies(db):
    editor = wb.editor("channel", wb.load_candles().iloc[-800:], {"entry_window": 25})
    editor.name_box.value = "from the editor"
    saved = editor.save()
    assert saved.params["entry_window"] == 25 and "from the editor v1" in editor.status.value
    assert wb.load_strategy("from the editor") == saved
