"""Live sessions that stop, pause and fail safely, with exchange-native protection.

Against the loopback Binance and Gate (real ccxt classes, signed requests), the real
PostgreSQL and real threads: a slow tick that ``stop()`` must make give way, an exchange reject
that ends a session in ``error`` holding a position, stops resting on the venue (Binance spot
STOP_LOSS_LIMIT, USDⓈ-M STOP_MARKET algo orders, Gate price-triggered orders) that trigger when
the price falls.
"""

from __future__ import annotations

import os
import threading
import time
from decimal import Decimal

import pandas as pd
import pytest
from loopback_exchange import Binance, Gate
from sqlalchemy import select, text
from test_live import ccxt_session

import workbench as wb
from workbench import store, vault
from workbench.errors import ExchangeError, InvalidOrder, SessionError
from workbench.exchange import CAPABILITIES, capability
from workbench.live import _tick

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
    server = Binance(
        KEY,
        SECRET,
        {"USDT": "10000"},
        futures_balances={"USDT": "10000"},
        prices={"BTC/USDT": str(candles["open"].iloc[0])},
        candles={"BTC/USDT": candles},
        visibility_delay=0.0,
    )
    with server:
        server.candles_used = candles
        yield server


def _session(server, name: str, market_type: str = "spot", **settings) -> int:
    return ccxt_session(
        server, name, "channel", LONG, keys=(KEY, SECRET), market_type=market_type, timeout_ms=3000, **settings
    )


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
    resting = [
        o.client_id for book in (server.spot, server.futures) for o in book.orders.values() if o.status == "open"
    ]
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
    assert (
        state.status == "stopped" and state.message == "stopped by the user; nothing rested or was held on the exchange"
    )
    assert 0.1 < waited < 5  # it waited for the tick, not for its timeout
    assert wb.live.tick(sid).skipped == "the session is stopped"


def test_pause_waits_for_the_tick_and_refuses_a_move_it_cannot_make(binance):
    sid = _session(binance, "pause wait", stop_timeout=0.5)
    with _tick._exclusive(sid) as db:  # a tick that never gives way (it holds the lock, sends nothing)
        assert db is not None
        with pytest.raises(
            SessionError,
            match=r"a tick still runs after 0.5 s; it gives way before its next "
            r"order, so call pause\(\) again shortly",
        ):
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
        guard = scope.execute(
            select(store.Order.type, store.Order.status, store.Order.exchange_order_id).where(
                store.Order.session_id == sid, store.Order.leg == "guard"
            )
        ).one()
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


def test_a_stop_the_venue_cannot_answer_is_tried_again_by_every_run_until_the_position_is_protected(binance):
    wb.notify.add_webhook("wind-down", "https://hooks.example.com/desk", events=["message"])
    sid = _session(binance, "stop unreachable")
    _until_long(binance, sid)
    held = _held(binance)
    binance.fail("/api/v3/klines", 503, "Service Unavailable", method="GET", times=100)  # the price
    state = wb.live.stop(sid)
    assert state.status == "stopped" and state.wind_down_pending == "protect"
    assert "could NOT be secured" in state.message and "tried again on every scheduled run" in state.message
    assert not [s for s in binance.stops.values() if s.status == "open"] and _held(binance) == held
    report = wb.live.tick(sid)  # the next run, the venue still down: still pending
    assert "could NOT be secured" in report.skipped and wb.live.status(sid).wind_down_pending == "protect"
    binance.clear_faults()
    report = wb.live.tick(sid)  # the venue answers again: the guard rests, nothing is due any more
    resting = [s for s in binance.stops.values() if s.status == "open"]
    assert len(resting) == 1 and resting[0].amount == _lots(held) and resting[0].side == "sell"
    state = wb.live.status(sid)
    assert state.wind_down_pending is None and "secured on a later try: the position of" in state.message
    assert "its wind-down was tried again" in report.skipped
    with store.session() as scope:
        told = scope.scalars(
            text("SELECT data->>'text' FROM notification_events WHERE session_id = :id AND kind = 'message'"),
            {"id": sid},
        ).all()
    assert any("secured on a later try" in line for line in told)
    assert wb.live.tick(sid).skipped == "the session is stopped"
    assert len([s for s in binance.stops.values() if s.status == "open"]) == 1  # not placed twice


def test_stopping_again_tries_a_wind_down_that_could_not_protect_the_position_at_once(binance):
    sid = _session(binance, "stop again")
    _until_long(binance, sid)
    binance.fail("/api/v3/klines", 503, "Service Unavailable", method="GET", times=100)
    assert wb.live.stop(sid).wind_down_pending == "protect"
    binance.clear_faults()
    state = wb.live.stop(sid)
    assert state.status == "stopped" and state.wind_down_pending is None
    assert len([s for s in binance.stops.values() if s.status == "open"]) == 1
    with pytest.raises(SessionError, match="cannot go from stopped to stopped"):
        wb.live.stop(sid)  # nothing is due any more: a stopped session is final


def test_a_resting_order_that_filled_just_before_stop_is_recorded_by_the_wind_down(binance):
    """Binance shows an order's trades only after it shows the order filled ("Memory =>
    Database"): the stop's wind-down, the session's last tick, waits for them."""
    sid = ccxt_session(
        binance,
        "fills at stop",
        "market_making",
        {"spread": 1.0, "order_size": 0.03, "max_inventory": 1.0, "inventory": "both"},
        keys=(KEY, SECRET),
        timeout_ms=3000,
        on_error="leave",
    )
    bar = 1
    while not [o for o in binance.spot.orders.values() if o.status == "open" and o.side == "buy"]:
        _tick_at(binance, sid, bar)
        bar += 1
    bid = next(o for o in binance.spot.orders.values() if o.status == "open" and o.side == "buy")
    binance.spot.visibility_delay = 1.0
    binance.set_price("BTC/USDT", str(bid.price * Decimal("0.999")))  # the market falls through the bid
    assert bid.status == "filled"
    wb.live.stop(sid)
    with store.session() as scope:
        recorded = set(scope.scalars(select(store.Fill.exchange_trade_id)).all())
    assert {str(t.id) for t in binance.spot.trades} <= recorded


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


def test_a_swap_session_records_the_funding_the_venue_booked_once_each(binance):
    symbol = "BTC/USDT:USDT"
    sid = _session(binance, "swap funding", market_type="swap")
    bar = _until_long(binance, sid)
    paid = [binance.futures.settle_funding(symbol, rate) for rate in ("0.0001", "-0.00005")]
    wallet = binance.futures.balances["USDT"]
    report = _tick_at(binance, sid, bar)
    assert report.funding == 2 and report.equity == wallet + binance.futures.unrealized("USDT")
    assert wb.live.status(sid).funding == sum(paid) and paid[0] < 0 < paid[1]  # a long pays, then receives
    assert _tick_at(binance, sid, bar + 1).funding == 0  # fetched again, recorded once
    with store.session() as scope:
        booked = scope.scalars(
            text("SELECT amount FROM funding_payments WHERE session_id = :id ORDER BY ts"), {"id": sid}
        ).all()
    assert booked == paid


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
        told = (
            scope.execute(
                text("SELECT data->>'text' FROM notification_events WHERE session_id = :id AND kind = 'message'"),
                {"id": sid},
            )
            .scalars()
            .all()
        )
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
    sid = ccxt_session(
        binance,
        "levered",
        "ema_reversal",
        {
            "ema_window": 10,
            "dip_levels": [0.2],
            "stop_loss": 50.0,
            "take_profit": [20.0],
            "position_size": 0.5,
            "leverage": 5,
        },
        keys=(KEY, SECRET),
        market_type="swap",
        timeout_ms=3000,
    )
    bar = next(
        bar for bar in range(1, BARS - 2) if _tick_at(binance, sid, bar) and binance.futures.position(symbol)[0] > 0
    )
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
        recorded = scope.execute(
            text(
                "SELECT o.resolution, o.filled, count(f.id) FROM orders o "
                "JOIN fills f ON f.order_id = o.id WHERE o.session_id = :id "
                "AND o.exchange_order_id = :order GROUP BY o.id"
            ),
            {"id": sid, "order": str(liquidation.id)},
        ).one()
        fills = scope.scalar(
            text("SELECT count(*) FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.session_id = :id"),
            {"id": sid},
        )
        told = scope.scalars(
            text("SELECT data->>'text' FROM notification_events WHERE session_id = :id AND kind = 'message'"),
            {"id": sid},
        ).all()
    assert any(message.startswith("binance liquidated the position") for message in told)
    assert recorded == ("closed by the venue's liquidation engine", size, 1)
    assert fills == len(binance.futures.trades)  # the ledger equals the venue
    assert _tick_at(binance, sid, bar + 2).skipped == "the session is error"


# -- the venue-capability table ---------------------------------------------------------------


def test_strategies_with_stops_are_refused_where_the_venue_has_no_native_stop(db):
    assert all(capability(v, m).stop_loss for v in ("binance", "gate", "paper") for m in ("spot", "swap"))
    assert capability("gate", "swap").order_types == ("market", "limit", "stop")
    assert set(CAPABILITIES) == {(v, m) for v in ("binance", "gate", "paper") for m in ("spot", "swap")}
    assert not capability("kraken", "spot").stop_loss  # a venue the table does not know: market and limit only
    wb.save_strategy(
        "stops anywhere",
        "ema_reversal",
        {"ema_window": 20, "dip_levels": [0.5], "stop_loss": 1.5, "take_profit": [1.0], "position_size": 0.5},
    )
    with pytest.raises(
        SessionError,
        match=r"places stop-losses, which kraken spot sessions cannot rest on the "
        r"exchange yet .*emulate_stops=True",
    ):
        wb.live.create_session("stops anywhere", "BTC/USDT", exchange="kraken", account=1, market_type="spot")
    account = wb.vault.add_account("gate", KEY, SECRET, permissions="trade", label="gate")
    sid = wb.live.create_session("stops anywhere", "BTC/USDT", exchange="gate", account=account, market_type="spot")
    assert wb.live.status(sid).status == "paused"


# -- Gate: price-triggered orders as the native stop ----------------------------------------------

GATE_EMA = {
    "ema_window": 10,
    "dip_levels": [0.3, 0.6, 1.0],
    "stop_loss": 1.5,
    "take_profit": [0.5, 1.0],
    "position_size": 0.5,
}
# a market entry with its stop in the same bar, the stop trailing the best price since
TRAILING = {"rules": "buy 50% when EMA(3) > EMA(8) trailing_stop 1%\nexit long when EMA(3) < EMA(8)"}
SWAP = "BTC/USDT:USDT"


@pytest.fixture
def gate(db):
    candles = _recent_candles(BARS)
    server = Gate(
        KEY,
        SECRET,
        {"USDT": "10000"},
        futures_balances={"USDT": "10000"},
        prices={"BTC/USDT": str(candles["open"].iloc[0])},
        candles={"BTC/USDT": candles},
    )
    with server:
        server.candles_used = candles
        yield server


def _gate_session(
    server, name: str, market_type: str, template: str = "ema_reversal", params: dict | None = None
) -> int:
    return ccxt_session(
        server, name, template, params or GATE_EMA, keys=(KEY, SECRET), market_type=market_type, timeout_ms=3000
    )


def _position(server, market_type: str) -> Decimal:
    return _held(server) if market_type == "spot" else server.futures.position(SWAP)[0]


def _resting_stops(server) -> list:
    return [s for s in server.stops.values() if s.status == "open"]


def _open_stop_rows(sid: int) -> list:
    with store.session() as scope:
        return scope.execute(
            select(
                store.Order.client_order_id, store.Order.exchange_order_id, store.Order.price, store.Order.amount
            ).where(store.Order.session_id == sid, store.Order.type == "stop", store.Order.status == "open")
        ).all()


def _price_orders(market_type: str) -> str:
    return "/api/v4/spot/price_orders" if market_type == "spot" else "/api/v4/futures/usdt/price_orders"


def _until_a_stop_rests(server, sid: int) -> int:
    """Tick from bar 1 until the session's stop rests on the exchange; the next bar."""
    for bar in range(1, BARS - 1):
        _tick_at(server, sid, bar)
        if _resting_stops(server):
            return bar + 1
    raise AssertionError("the strategy never placed a stop")


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_a_gate_session_rests_its_stop_with_the_entry_and_keeps_it_in_step_with_the_strategy(gate, market_type):
    """Each tick that leaves a position leaves one price order of the session resting on Gate,
    the entry's tick too, at the strategy's stop over the position (each tick cancels the last
    candle's and places its own, which trails the best price); flat, none rests."""
    sid = _gate_session(gate, f"gate stops {market_type}", market_type, "rules", TRAILING)
    step, triggers, flat_after_a_stop = Decimal("0.0001"), [], 0
    for bar in range(1, BARS - 1):
        _tick_at(gate, sid, bar)
        resting, held = _resting_stops(gate), _position(gate, market_type)
        assert [(r.exchange_order_id, r.price, r.amount) for r in _open_stop_rows(sid)] == [
            (f"price-{s.id}", s.trigger, s.amount) for s in resting
        ]
        if held >= step:
            (stop,) = resting
            assert (
                stop.side == "sell" and 0 <= held - stop.amount <= step and stop.reduce_only == (market_type == "swap")
            )
            assert stop.limit == (
                None if market_type == "swap" else (stop.trigger * Decimal("0.995")).quantize(Decimal("0.01"))
            )
            triggers.append(stop.trigger)
        else:
            assert resting == []
            flat_after_a_stop += bool(triggers)
    assert len(set(triggers)) >= 5 and flat_after_a_stop >= 3  # it moved with the strategy, and went when flat
    placed = [s.client_id for s in gate.stops.values()]
    assert len(placed) == len(set(placed)) == len(gate.requests_to(_price_orders(market_type), "POST"))
    fired = [s for s in gate.stops.values() if s.status == "triggered"]  # an open gapped through one
    assert fired and {s.status for s in gate.stops.values() if s not in fired + _resting_stops(gate)} == {"canceled"}
    with store.session() as scope:
        recorded = dict(
            scope.execute(
                select(store.Order.client_order_id, store.Order.exchange_order_id).where(
                    store.Order.session_id == sid, store.Order.type == "stop", store.Order.status == "closed"
                )
            ).all()
        )
        fills = scope.scalar(
            text("SELECT count(*) FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.session_id = :id"),
            {"id": sid},
        )
    assert recorded == {s.client_id[2:]: str(s.actual.id) for s in fired}  # their fills are the stop's
    assert fills == len((gate.spot if market_type == "spot" else gate.futures).trades)  # each recorded once


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_a_gate_stop_that_fires_between_ticks_is_recorded_once_as_the_stop_leg(gate, market_type):
    """The price falls through the resting stop while no tick runs: Gate places the order (a
    spot stop's carries Gate's own text, "api", not the session's). The next tick finds it
    through the price order's fired_order_id / trade_id and records its fill once, on the stop
    leg, never as a trade by hand."""
    sid = _gate_session(gate, f"gate fires {market_type}", market_type)
    bar = _until_a_stop_rests(gate, sid)
    (stop,) = _resting_stops(gate)
    gate.set_price("BTC/USDT", str(stop.trigger * Decimal("0.999")))
    assert stop.status == "triggered" and stop.actual.filled == stop.amount
    assert stop.actual.client_id == ("api" if market_type == "spot" else stop.client_id)
    (trade,) = [t for book in (gate.spot, gate.futures) for t in book.trades if t.order is stop.actual]
    _tick_at(gate, sid, bar)
    _tick_at(gate, sid, bar + 1)
    with store.session() as scope:
        recorded = scope.execute(
            select(
                store.Order.leg,
                store.Order.exchange_order_id,
                store.Order.status,
                store.Order.filled,
                store.Fill.exchange_trade_id,
            )
            .join(store.Fill, store.Fill.order_id == store.Order.id)
            .where(store.Order.session_id == sid, store.Fill.exchange_trade_id == str(trade.id))
        ).all()
        settings = scope.get(store.TradingSession, sid).settings
    assert recorded == [("stop", str(stop.actual.id), "closed", stop.amount, str(trade.id))]
    assert not settings.get("hand_trades") and Decimal(settings.get("position_offset", "0")) == 0


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_stop_on_gate_leaves_a_native_stop_resting_not_a_market_flatten(gate, market_type):
    """stop() with ``on_error="protect"`` (the default): the session's orders are cancelled and a
    guard price order rests at the strategy's stop; it closes the position with no tick running."""
    sid = _gate_session(gate, f"gate protect {market_type}", market_type)
    _until_a_stop_rests(gate, sid)
    held, strategy_stop = _position(gate, market_type), _resting_stops(gate)[0].trigger
    orders = {id(book): len(book.orders) for book in (gate.spot, gate.futures)}
    state = wb.live.stop(sid)
    (guard,) = _resting_stops(gate)
    assert guard.client_id.endswith("-guard") and guard.trigger == strategy_stop and guard.side == "sell"
    assert 0 <= held - guard.amount <= Decimal("0.0001") and guard.reduce_only == (market_type == "swap")
    assert state.status == "stopped" and f"protected by a stop at {guard.trigger:g} on the exchange" in state.message
    assert "closed at market" not in state.message and _position(gate, market_type) == held
    assert {id(book): len(book.orders) for book in (gate.spot, gate.futures)} == orders  # no order was placed
    gate.set_price("BTC/USDT", str(guard.trigger * Decimal("0.999")))  # no tick runs any more
    assert guard.status == "triggered" and _position(gate, market_type) == held - guard.amount


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_an_error_on_gate_ends_with_a_native_stop_resting(gate, market_type):
    """Gate refuses the tick's stop: the session ends in error, and winding down rests a guard
    stop on the exchange at the strategy's stop (not a market order)."""
    sid = _gate_session(gate, f"gate error {market_type}", market_type)
    bar = _until_a_stop_rests(gate, sid)
    strategy_stop = _resting_stops(gate)[0].trigger
    gate.fail(
        _price_orders(market_type),
        400,
        {"label": "INVALID_PARAM_VALUE", "message": "invalid argument: put"},
        method="POST",
        times=1,
    )
    with pytest.raises(InvalidOrder):
        _tick_at(gate, sid, bar)
    state, held = wb.live.status(sid), _position(gate, market_type)
    assert state.status == "error" and "cannot succeed by retrying" in state.message
    assert f"is protected by a stop at {strategy_stop:g} on the exchange" in state.message
    (guard,) = _resting_stops(gate)
    assert guard.client_id.endswith("-guard") and guard.trigger == strategy_stop
    assert 0 <= held - guard.amount <= Decimal("0.0001")
    assert _open_on_exchange(gate) == [guard.client_id]


def test_a_second_wind_down_in_the_same_hour_rests_a_guard_of_its_own(gate):
    """An error winds the session down (a guard rests), the user resumes it, a tick replaces the
    guard by the strategy's stop, and stop() in the same hour winds down again: its guard is a
    new order, not the first one's (cancelled) taken for it."""
    sid = _gate_session(gate, "gate twice", "spot")
    bar = _until_a_stop_rests(gate, sid)
    gate.fail(
        _price_orders("spot"),
        400,
        {"label": "INVALID_PARAM_VALUE", "message": "invalid argument: put"},
        method="POST",
        times=1,
    )
    with pytest.raises(InvalidOrder):
        _tick_at(gate, sid, bar)
    (first,) = _resting_stops(gate)
    wb.live.resume(sid)
    _tick_at(gate, sid, bar + 1)
    assert first.status == "canceled" and len(_resting_stops(gate)) == 1
    state = wb.live.stop(sid)
    (guard,) = _resting_stops(gate)
    assert guard is not first and "protected by a stop at" in state.message
    assert guard.client_id.rsplit("-", 1)[1] == ("guard1" if guard.client_id[:-1] == first.client_id else "guard")


@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_a_lost_answer_on_a_gate_stop_is_resolved_by_its_text_and_not_sent_twice(gate, market_type):
    """Gate takes any number of price orders under one text and finds none by it: a stop whose
    answer was lost is looked for among the open price orders before anything is sent again,
    in a tick and in the wind-down."""
    sid = _gate_session(gate, f"gate lost {market_type}", market_type)
    bar = _until_a_stop_rests(gate, sid)
    path = _price_orders(market_type)
    for drop in (True, False):  # in the tick, then in stop()'s wind-down
        posts = len(gate.requests_to(path, "POST"))
        gate.lose_response(path, method="POST", **({} if drop else {"status": 502}))
        if drop:
            report = _tick_at(gate, sid, bar)
            assert report.status == "running"
        else:
            assert wb.live.stop(sid).status == "stopped"
        (stop,) = _resting_stops(gate)
        assert len(gate.requests_to(path, "POST")) == posts + 1
        with store.session() as scope:
            row = scope.execute(
                select(store.Order.exchange_order_id, store.Order.resolution).where(
                    store.Order.session_id == sid, store.Order.client_order_id == stop.client_id[2:]
                )
            ).one()
        assert row == (f"price-{stop.id}", "found on the exchange after its answer was lost")
    assert [s.client_id for s in gate.stops.values()].count(stop.client_id) == 1
