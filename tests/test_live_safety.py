"""Live sessions that stop, pause and fail safely, with exchange-native protection.

Against the loopback Binance (real ccxt.binance, signed requests), the real PostgreSQL and
real threads: a slow tick that ``stop()`` must make give way, an exchange reject that ends a
session in ``error`` holding a position, stops resting on Binance's book (spot
STOP_LOSS_LIMIT, USDⓈ-M STOP_MARKET algo orders) that trigger when the price falls.
"""
from __future__ import annotations

import os
import threading
import time
from decimal import Decimal

import pandas as pd
import pytest
from loopback_exchange import Binance
from sqlalchemy import select, text

import workbench as wb
from workbench import store, vault
from workbench.errors import ExchangeError, InvalidOrder, SessionError
from workbench.exchange import CAPABILITIES, capability
from workbench.live import _tick
from test_live import ccxt_session

KEY, SECRET = "SAFEKEY" + os.urandom(8).hex(), "SAFESECRET" + os.urandom(16).hex()
LONG = {"entry_window": 6, "exit_window": 3, "direction": "long", "position_size": 0.5}
BARS = 60


@pytest.fixture
def db(database):
    if database.server.backend != "embedded":
        pytest.skip("the exchange-facing behaviour does not depend on the server; the embedded one suffices")
    vault.use(None)
    yield database
    vault.use(None)


def _recent_candles(bars: int) -> pd.DataFrame:
    """Bundled candles moved to end an hour ago, so a signed request's real timestamp fits."""
    candles = wb.load_candles().iloc[:bars].copy()
    last = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=1)
    candles.index = pd.date_range(end=last, periods=bars, freq="1h", name="time")
    candles.attrs["timeframe"] = "1h"
    return candles


@pytest.fixture
def binance(db):
    candles = _recent_candles(BARS)
    server = Binance(KEY, SECRET, {"USDT": "10000"}, futures_balances={"USDT": "10000"},
                     prices={"BTC/USDT": str(candles["open"].iloc[0])}, candles={"BTC/USDT": candles},
                     visibility_delay=0.0)
    with server:
        server.candles_used = candles
        yield server


def _session(server, name: str, market_type: str = "spot", **settings) -> int:
    return ccxt_session(server, name, "channel", LONG, keys=(KEY, SECRET), market_type=market_type, timeout_ms=3000,
                        **settings)


def _tick_at(server, sid: int, bar: int) -> _tick.TickReport:
    server.set_price("BTC/USDT", str(server.candles_used["open"].iloc[bar]))
    return wb.live.tick(sid, now=server.candles_used.index[bar].to_pydatetime())


def _trade_bars() -> list[int]:
    """The bars on which the strategy trades (the backtest's fill times), in order."""
    candles = _recent_candles(BARS)
    fills = wb.backtest("channel", candles, LONG).fills
    return sorted({int(candles.index.get_loc(t)) for t in fills["time"]})


def _held(server) -> Decimal:
    return server.spot.balances.get("BTC", Decimal(0))


def _lots(amount: Decimal) -> Decimal:
    """``amount`` in Binance's 0.00001 BTC lot steps (the fee taken in BTC leaves dust)."""
    return amount.quantize(Decimal("0.00001"), rounding="ROUND_DOWN")


def _open_on_exchange(server) -> list[str]:
    """Every order of the account still working on the exchange: book orders and stops."""
    resting = [o.client_id for book in (server.spot, server.futures) for o in book.orders.values() if o.status == "open"]
    return resting + [s.client_id for s in server.stops.values() if s.status == "open"]


def _until_long(server, sid: int) -> int:
    """Tick from bar 1 to just after the first entry; the next bar."""
    entry = _trade_bars()[0]
    for bar in range(1, entry + 1):
        _tick_at(server, sid, bar)
    assert _held(server) > 0 or server.futures.position("BTC/USDT:USDT")[0] > 0
    return entry + 1


# -- stop() and pause() against a running tick ------------------------------------------------

def test_stop_makes_a_slow_tick_give_way_before_it_sends_anything(binance):
    sid = _session(binance, "slow stop")
    entry = _trade_bars()[0]
    for bar in range(1, entry):
        _tick_at(binance, sid, bar)
    assert _held(binance) == 0 and not _open_on_exchange(binance)
    binance.delay("/api/v3/account", 1.5)  # the tick reads the balance just before it sends the entry
    outcome: dict = {}
    ticking = threading.Thread(target=lambda: outcome.update(report=_tick_at(binance, sid, entry)))
    ticking.start()
    deadline = time.monotonic() + 10
    while not binance.requests_to("/api/v3/account") and time.monotonic() < deadline:
        time.sleep(0.01)
    posts_before = len(binance.requests_to("/api/v3/order", "POST"))
    started = time.monotonic()
    state = wb.live.stop(sid)
    waited = time.monotonic() - started
    ticking.join(10)
    assert not ticking.is_alive()
    report = outcome["report"]
    assert report.skipped == "the session is being stopped or paused; 0 orders were sent before it gave way"
    assert report.placed == []
    assert len(binance.requests_to("/api/v3/order", "POST")) == posts_before  # nothing was sent
    assert _held(binance) == 0 and not _open_on_exchange(binance)
    assert state.status == "stopped" and state.message == "stopped by the user; nothing rested or was held on the exchange"
    assert 0.1 < waited < 5  # it waited for the tick, not for its timeout
    assert wb.live.tick(sid).skipped == "the session is stopped"


def test_pause_waits_for_the_tick_and_refuses_a_move_it_cannot_make(binance):
    sid = _session(binance, "pause wait", stop_timeout=0.5)
    with _tick._exclusive(sid) as db:  # a tick that never gives way (it holds the lock, sends nothing)
        assert db is not None
        with pytest.raises(SessionError, match=r"a tick still runs after 0.5 s; it gives way before its next "
                                               r"order, so call pause\(\) again shortly"):
            wb.live.pause(sid)
        assert wb.live.status(sid).status == "running"  # nothing moved
    assert wb.live.pause(sid).status == "paused"
    with pytest.raises(SessionError, match="cannot go from paused to paused"):
        wb.live.pause(sid)


def test_stop_protects_the_position_with_a_stop_on_the_exchange_that_fires(binance):
    sid = _session(binance, "stop protect")
    bar = _until_long(binance, sid)
    held = _held(binance)
    state = wb.live.stop(sid)
    price = Decimal(str(binance.candles_used["close"].iloc[-1]))
    resting = [s for s in binance.stops.values() if s.status == "open"]
    assert len(resting) == 1 and resting[0].amount == _lots(held) and resting[0].side == "sell"
    assert resting[0].trigger == pytest.approx(price * Decimal("0.95"), rel=Decimal("1e-6"))
    assert resting[0].limit == pytest.approx(resting[0].trigger * Decimal("0.995"), rel=Decimal("1e-4"))
    assert state.status == "stopped"
    assert f"the position of {held:g} is protected by a stop at {resting[0].trigger:g} on the exchange" in state.message
    with store.session() as scope:
        guard = scope.execute(select(store.Order.type, store.Order.status, store.Order.exchange_order_id)
                              .where(store.Order.session_id == sid, store.Order.leg == "guard")).one()
    assert guard.type == "stop" and guard.status == "open" and guard.exchange_order_id == str(resting[0].id)
    binance.set_price("BTC/USDT", str(resting[0].trigger * Decimal("0.999")))  # the market falls through it
    assert resting[0].status == "triggered" and _held(binance) == held - _lots(held)  # sold, no tick ran
    assert wb.live.tick(sid).skipped == "the session is stopped"
    del bar


def test_an_exchange_reject_ends_in_error_with_open_orders_cancelled_and_the_position_protected(binance):
    sid = _session(binance, "reject protect")
    _until_long(binance, sid)
    exit_bar = next(b for b in _trade_bars() if b > _trade_bars()[0])
    for bar in range(_trade_bars()[0] + 1, exit_bar):
        _tick_at(binance, sid, bar)
    held = _held(binance)
    binance.fail("/api/v3/order", 400, {"code": -1013, "msg": "Filter failure: NOTIONAL"}, method="POST", times=1)
    with pytest.raises(InvalidOrder):
        _tick_at(binance, sid, exit_bar)
    state = wb.live.status(sid)
    assert state.status == "error" and "cannot succeed by retrying" in state.message
    assert f"the position of {held:g} is protected by a stop at " in state.message
    assert "Filter failure: NOTIONAL" in state.message
    assert _open_on_exchange(binance) == [s.client_id for s in binance.stops.values() if s.status == "open"]
    assert len(_open_on_exchange(binance)) == 1 and _held(binance) == held


def test_flatten_and_leave_policies(binance):
    flat = _session(binance, "stop flatten", on_error="flatten")
    _until_long(binance, flat)
    state = wb.live.stop(flat)
    assert _held(binance) < Decimal("0.00001") and not _open_on_exchange(binance)
    assert "was closed at market" in state.message
    with pytest.raises(SessionError, match="on_error 'panic': use one of flatten, protect, leave"):
        _session(binance, "bad policy", on_error="panic")


def test_a_swap_session_protects_with_a_reduce_only_stop_market_algo_order(binance):
    sid = _session(binance, "swap protect", market_type="swap")
    _until_long(binance, sid)
    size, _ = binance.futures.position("BTC/USDT:USDT")
    assert size > 0
    state = wb.live.stop(sid)
    algo = [s for s in binance.stops.values() if s.status == "open"]
    assert len(algo) == 1 and algo[0].reduce_only and algo[0].limit is None and algo[0].amount == size
    assert "protected by a stop at" in state.message
    assert binance.requests_to("/fapi/v1/algoOrder", "POST")
    binance.set_price("BTC/USDT", str(algo[0].trigger * Decimal("0.99")))
    assert binance.futures.position("BTC/USDT:USDT")[0] == 0 and algo[0].status == "triggered"


def test_a_swap_session_trades_isolated_and_counts_unrealised_pnl_once(binance):
    """Binance starts a symbol in cross margin and reports ``marginBalance`` (wallet plus
    unrealised PnL) as the balance: the session sets isolated margin at its leverage on every
    tick, and its equity is the venue's, not the venue's plus the unrealised PnL again."""
    symbol = "BTC/USDT:USDT"
    assert binance.futures.margin_mode_of(symbol) == "cross"
    sid = _session(binance, "swap margin", market_type="swap")
    bar = _until_long(binance, sid)
    assert binance.futures.margin_mode_of(symbol) == "isolated" and binance.futures.leverage_of(symbol) == 1
    size, _ = binance.futures.position(symbol)
    report = _tick_at(binance, sid, bar)
    assert binance.futures.position(symbol)[0] == size  # still long: the mark moved, the wallet did not
    pnl = binance.futures.unrealized("USDT")
    assert pnl and report.equity == binance.futures.balances["USDT"] + pnl
    binance.futures.leverage[symbol] = 20  # changed by hand on the exchange: set back at the next tick
    _tick_at(binance, sid, bar + 1)
    assert binance.futures.leverage_of(symbol) == 1
    assert binance.futures.position(symbol)[0]  # changed to cross by hand: it cannot change back under a position
    binance.futures.margin_mode[symbol] = "cross"
    with pytest.raises(ExchangeError, match="Margin type cannot be changed if there exists position"):
        _tick_at(binance, sid, bar + 2)
    state = wb.live.status(sid)
    assert state.status == "error" and "protected by a stop at" in state.message


def test_a_halted_market_pauses_the_session_with_a_notice_and_it_resumes_when_trading_again(binance):
    sid = _session(binance, "halted")
    wb.notify.add_webhook("desk", "https://hooks.example.com/desk", events=["message", "session.paused"])
    bar = _until_long(binance, sid)
    binance.symbol_status["BTC/USDT"] = "BREAK"  # exchangeInfo: halted (or being delisted)
    posted = len(binance.requests_to("/api/v3/order", "POST"))
    report = _tick_at(binance, sid, bar)
    state = wb.live.status(sid)
    assert report.status == state.status == "paused" and not report.placed
    assert "BTC/USDT does not trade on binance now" in state.message
    assert len(binance.requests_to("/api/v3/order", "POST")) == posted
    with store.session() as scope:
        told = scope.execute(text("SELECT data->>'text' FROM notification_events WHERE session_id = :id "
                                  "AND kind = 'message'"), {"id": sid}).scalars().all()
    assert any("does not trade on binance now" in message for message in told)
    binance.symbol_status["BTC/USDT"] = "TRADING"
    wb.live.resume(sid)
    assert _tick_at(binance, sid, bar + 1).status == "running"


def test_a_liquidation_by_the_venue_is_recorded_and_ends_the_session(binance):
    """A 5x long the price falls through: Binance's liquidation engine closes it with an order
    of its own ("autoclose-..."). The next tick records that order and fill as the session's
    (the ledger equals the venue), cancels what the session had resting, tells the user and
    ends in error instead of buying the position back."""
    symbol = "BTC/USDT:USDT"
    wb.notify.add_webhook("liquidations", "https://hooks.example.com/desk", events=["message"])
    sid = ccxt_session(binance, "levered", "ema_reversal", {"ema_window": 10, "dip_levels": [0.2], "stop_loss": 50.0,
                                                           "take_profit": [20.0], "position_size": 0.5, "leverage": 5},
                       keys=(KEY, SECRET), market_type="swap", timeout_ms=3000)
    bar = next(bar for bar in range(1, BARS - 2)
               if _tick_at(binance, sid, bar) and binance.futures.position(symbol)[0] > 0)
    size, entry = binance.futures.position(symbol)
    binance.set_price("BTC/USDT", str((entry * Decimal("0.75")).quantize(Decimal("0.1"))))  # -25%: below 1/5
    assert binance.futures.position(symbol)[0] == 0
    (liquidation,) = [o for o in binance.futures.orders.values() if o.client_id.startswith("autoclose-")]
    report = _tick_at(binance, sid, bar + 1)
    state = wb.live.status(sid)
    assert report.status == state.status == "error" and not report.placed
    assert f"binance liquidated the position: sell {size:g} {symbol}" in state.message
    assert not _open_on_exchange(binance)
    with store.session() as scope:
        recorded = scope.execute(text("SELECT o.resolution, o.filled, count(f.id) FROM orders o "
                                      "JOIN fills f ON f.order_id = o.id WHERE o.session_id = :id "
                                      "AND o.exchange_order_id = :order GROUP BY o.id"),
                                 {"id": sid, "order": str(liquidation.id)}).one()
        fills = scope.scalar(text("SELECT count(*) FROM fills f JOIN orders o ON o.id = f.order_id "
                                  "WHERE o.session_id = :id"), {"id": sid})
        told = scope.scalars(text("SELECT data->>'text' FROM notification_events WHERE session_id = :id "
                                  "AND kind = 'message'"), {"id": sid}).all()
    assert any(message.startswith("binance liquidated the position") for message in told)
    assert recorded == ("closed by the venue's liquidation engine", size, 1)
    assert fills == len(binance.futures.trades)  # the ledger equals the venue
    assert _tick_at(binance, sid, bar + 2).skipped == "the session is error"


# -- the venue-capability table ---------------------------------------------------------------

def test_strategies_with_stops_are_refused_where_the_venue_has_no_native_stop(db):
    assert capability("binance", "swap").stop_loss and not capability("gate", "swap").stop_loss
    assert capability("paper", "spot").order_types == ("market", "limit", "stop")
    assert set(CAPABILITIES) == {(v, m) for v in ("binance", "gate", "paper") for m in ("spot", "swap")}
    account = wb.vault.add_account("gate", KEY, SECRET, permissions="trade", label="gate")
    wb.save_strategy("stops on gate", "ema_reversal", {"ema_window": 20, "dip_levels": [0.5], "stop_loss": 1.5,
                                                        "take_profit": [1.0], "position_size": 0.5})
    with pytest.raises(SessionError, match=r"places stop-losses, which gate spot sessions cannot rest on the "
                                           r"exchange yet .*emulate_stops=True"):
        wb.live.create_session("stops on gate", "BTC/USDT", exchange="gate", account=account, market_type="spot")
    sid = wb.live.create_session("stops on gate", "BTC/USDT", exchange="gate", account=account, market_type="spot",
                                 emulate_stops=True)
    assert wb.live.status(sid).status == "paused"
