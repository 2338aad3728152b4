"""workbench.live: sessions, ticks, exactly-once orders, backtest parity, keys that never leak.

Everything real: PostgreSQL (both test servers), the paper exchange with its PostgreSQL store
replaying bundled candles, and the real ccxt.binance class against the loopback Binance.
Crashes are injected at each named step of a tick (``_tick.checkpoint``) and by killing a
tick's process; exchange faults come from the loopback server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import pandas as pd
import pytest
from loopback_exchange import Binance, Gate
from sqlalchemy import func, select, text

import workbench as wb
from workbench import store, vault
from workbench.errors import AuthenticationFailed, ExchangeUnavailable, SessionError
from workbench.live import _tick

CHANNEL = {"entry_window": 12, "exit_window": 6, "direction": "both", "position_size": 0.5}
BRISK = {"entry_window": 5, "exit_window": 3, "direction": "both", "position_size": 0.5}  # trades often
# stops, take-profit ladders and dip ladders all trade in the first 400 hours of the data
EMA = {
    "ema_window": 20,
    "dip_levels": [0.4, 0.8, 1.2],
    "stop_loss": 1.5,
    "take_profit": [0.6, 1.2],
    "position_size": 0.9,
}
# quotes small against the inventory limit, so the second quote of a bar is sized as the first
MM = {"spread": 1.0, "order_size": 0.03, "max_inventory": 1.0, "inventory": "both"}


@pytest.fixture
def db(database):
    """The session's database, notebook side as tenant 'local'; the vault follows the database."""
    vault.use(None)
    yield database
    vault.use(None)


@pytest.fixture
def sim_db(db):
    """For the long replays that test trading semantics, not the database: one server is enough."""
    if db.server.backend != "embedded":
        pytest.skip("replay parity runs on the embedded server only (it does not depend on the server)")
    return db


class Crash(Exception):
    """Stands for the process dying at a checkpoint."""


def _candles(bars: int) -> pd.DataFrame:
    return wb.load_candles().iloc[:bars]


def _paper_session(name: str, template: str, params: dict, bars: int, **settings) -> int:
    candles = _candles(bars)
    wb.save_strategy(name, template, params)
    end = candles.index[-1] + pd.Timedelta(hours=1)
    sid = wb.live.create_session(
        name, exchange="paper", replay_from=str(candles.index[1]), replay_end=str(end), **settings
    )
    wb.live.start(sid)
    return sid


def _run(sid: int, limit: int = 10_000) -> list[_tick.TickReport]:
    reports = []
    for _ in range(limit):
        reports.append(wb.live.tick(sid))
        if reports[-1].status != "running" or reports[-1].skipped:
            break
    return reports


def _fills(sid: int) -> pd.DataFrame:
    """The session's recorded fills as the backtest lists them: time, signed size, price, fee."""
    with store.session() as scope:
        rows = scope.execute(
            select(store.Fill.ts, store.Order.side, store.Fill.amount, store.Fill.price, store.Fill.fee)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == sid)
            .order_by(store.Fill.ts, store.Fill.id)
        ).all()
    table = pd.DataFrame(
        [(r.ts, float(r.amount) * (1 if r.side == "buy" else -1), float(r.price), float(r.fee)) for r in rows],
        columns=["time", "size", "price", "fee"],
    )
    table["time"] = pd.to_datetime(table["time"], utc=True)
    return table


def _backtest_fills(template: str, params: dict, bars: int) -> pd.DataFrame:
    """The backtest a paper session replays: it settles no funding (``workbench.exchange._paper``)."""
    fills = wb.backtest(template, _candles(bars), params, funding=None).fills
    return fills[["time", "size", "price", "fee"]].reset_index(drop=True)


def _same(live: pd.DataFrame, backtest: pd.DataFrame) -> None:
    """Fill for fill, bit for bit (the times compared as instants)."""
    assert len(live) == len(backtest)
    assert live["time"].tolist() == backtest["time"].tolist()
    for column in ("size", "price", "fee"):
        assert live[column].tolist() == backtest[column].tolist(), column


# -- sessions and their states -------------------------------------------------------------


def test_session_states_move_only_along_legal_transitions(db):
    wb.save_strategy("states", "channel", CHANNEL)
    sid = wb.live.create_session("states", exchange="paper")
    first = wb.live.status(sid)
    assert (first.status, first.market_type, first.symbol) == ("paused", "swap", "BTC/USD:USD")  # it can short
    assert wb.live.tick(sid).skipped == "the session is paused"
    assert wb.live.start(sid).status == "running"
    assert wb.live.pause(sid).status == "paused"
    assert wb.live.resume(sid).status == "running"
    with pytest.raises(
        SessionError,
        match=r"cannot go from running to running; from running it can go to "
        r"paused \(pause\), error \(a tick\), stopped \(stop\)",
    ):
        wb.live.resume(sid)
    assert wb.live.stop(sid).status == "stopped"
    with pytest.raises(SessionError, match="cannot go from stopped to paused; .*nowhere: a stopped session is final"):
        wb.live.pause(sid)
    with pytest.raises(SessionError, match="no trading session #999999"):
        wb.live.status(999999)
    table = wb.live.sessions()
    assert table.loc[sid, "status"] == "stopped"
    assert table.loc[sid, "message"] == "stopped by the user; nothing rested or was held on the exchange"


def test_a_tenant_runs_several_sessions_and_bad_sessions_are_refused(db):
    wb.save_strategy("several", "ema_reversal", {**EMA, "leverage": 3})
    a = wb.live.create_session("several", exchange="paper")
    b = wb.live.create_session("several", exchange="paper", market_type="swap", timeframe="4h")
    assert wb.live.status(a).leverage == 3 and wb.live.status(a).market_type == "swap"
    assert {a, b} <= set(wb.live.sessions().index)
    with pytest.raises(SessionError, match="leverage 5 differs from strategy .*own leverage 3"):
        wb.live.create_session("several", exchange="paper", leverage=5)
    with pytest.raises(SessionError, match="max_leverage 2 is below the session's leverage 3"):
        wb.live.create_session("several", exchange="paper", max_leverage=2)
    with pytest.raises(SessionError, match="a paper session has no exchange account"):
        wb.live.create_session("several", exchange="paper", account=1)
    with pytest.raises(SessionError, match="needs account="):
        wb.live.create_session("several", "BTC/USDT", exchange="binance")
    with pytest.raises(SessionError, match="unknown setting 'balanse'"):
        wb.live.create_session("several", exchange="paper", balanse=5)


# -- parity with the backtest --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "template, params, bars", [("channel", CHANNEL, 200), ("ema_reversal", EMA, 200), ("market_making", MM, 150)]
)
def test_ticking_a_paper_session_through_history_trades_exactly_as_the_backtest(sim_db, template, params, bars):
    """Every fill equal to the bit: market orders at the open with slippage, resting limits at
    their price as maker (or at the open as taker), stops at min(open, stop) less slippage.

    Exact parity holds while each bar's resting orders can be fixed when the bar opens. Two
    backtest rules decide inside a bar on what a resting order cannot know (documented in
    workbench.live._plan): ema_reversal places no entry on a bar that had an exit (a bar
    reaching both a resting stop or take-profit and a resting dip level), and market_making
    sizes a bar's second quote after its first filled (it differs only when the inventory
    limit or the cash binds). The parameters and spans here contain no such bar, which the
    asserts on the backtest below check; test_the_next_tick_converges_after_an_intrabar_conflict
    shows what happens on one.
    """
    result = wb.backtest(template, _candles(bars), params, funding=None)
    kinds = {
        "channel": {"entry", "exit"},
        "ema_reversal": {"entry", "stop_loss", "take_profit"},
        "market_making": {"entry"},
    }[template]
    assert len(result.fills) >= 10 and kinds <= set(result.fills["kind"])
    assert not _intrabar_conflicts(template, params, result)
    sid = _paper_session(f"parity {template}", template, params, bars)
    reports = _run(sid)
    assert reports[-1].skipped == "the replay reached the end of its candles"
    _same(_fills(sid), _backtest_fills(template, params, bars))
    final = wb.live.status(sid)
    assert float(final.position) == result.position.iloc[-1]
    assert final.status == "stopped" and final.open_orders == 0


def _intrabar_conflicts(template: str, params: dict, result) -> list[pd.Timestamp]:
    """Bars where the backtest's rule needs to know the bar's path (see the test above)."""
    candles, fills = result.candles, result.fills
    if template == "market_making":  # the inventory limit (or the cash) could cut a second quote
        held = (result.position * candles["close"]).abs() / result.equity
        return list(candles.index[held > params["max_inventory"] - 2 * params["order_size"]])
    if template != "ema_reversal":
        return []
    from workbench.engine.indicators import _ema

    ema = pd.Series(_ema(candles["close"].to_numpy(), params["ema_window"]), candles.index)
    conflicts, entries, exited = [], 0, False
    for fill in fills.itertuples():
        if fill.kind == "entry":
            entries, exited = (0, False) if exited else (entries, False)
            entries += 1
        elif not exited:  # the trade's first exit: were dip levels still resting, and reached?
            exited = True
            bar = candles.index.get_loc(fill.time)
            opening = candles["open"].iloc[bar]
            known_at_open = fill.price in (opening, opening * (1 - result.settings["slippage"]))
            if entries < len(params["dip_levels"]) and not known_at_open:
                level = ema.iloc[bar - 1] * (1 - params["dip_levels"][entries] / 100)
                if candles["low"].iloc[bar] <= level:
                    conflicts.append(fill.time)
    return conflicts


@pytest.mark.slow
def test_the_next_tick_converges_after_an_intrabar_conflict(sim_db):
    """ema_reversal with a tight ladder: a bar that stops the position out (or takes a profit)
    also reaches a resting dip level. The backtest exits only; the paper exchange fills the
    resting dip too. Parity holds up to that bar; the next tick's "sync" leg trades the
    position back to the backtest's, and the session trades on to the end holding about what
    the backtest holds (its entries cut to the cash the account has: the conflict cost some)."""
    params = {"ema_window": 20, "dip_levels": [0.3, 0.5, 0.8], "stop_loss": 0.5, "take_profit": [1.0, 2.0, 3.0]}
    result = wb.backtest("ema_reversal", _candles(100), params, funding=None)
    conflict = _intrabar_conflicts("ema_reversal", params, result)[0]
    sid = _paper_session("conflict", "ema_reversal", params, 100)
    _run(sid)
    live, backtest = _fills(sid), _backtest_fills("ema_reversal", params, 100)
    before = backtest["time"] < conflict
    _same(live[live["time"] < conflict], backtest[before])
    assert (live["time"] == conflict).sum() > (backtest["time"] == conflict).sum()  # the extra dip fill
    with store.session() as scope:
        synced = scope.scalars(
            select(store.Order.candle_at).where(store.Order.session_id == sid, store.Order.leg == "sync")
        ).all()
    assert min(synced) == conflict + pd.Timedelta(hours=1)  # caught up at the very next tick
    final = wb.live.status(sid)  # it traded on to the end, entries cut to the cash it has (the
    assert final.message == "the replay reached the end of its candles"  # conflict cost some)
    assert float(final.position) == pytest.approx(result.position.iloc[-1], rel=0.02)


# -- risk limits --------------------------------------------------------------------------


def test_a_daily_loss_breach_flattens_stops_new_orders_and_says_by_how_much(db):
    candles = _candles(120)
    wb.save_strategy("risky", "channel", BRISK, {"max_daily_loss": 150})
    sid = wb.live.create_session(
        "risky",
        exchange="paper",
        replay_from=str(candles.index[1]),
        replay_end=str(candles.index[-1] + pd.Timedelta(hours=1)),
    )
    wb.live.start(sid)
    reports = _run(sid)
    breach = reports[-1]
    assert breach.status == "error" and breach.message.startswith("risk limit max_daily_loss 150 USD: today's loss is ")
    loss = float(breach.message.split("today's loss is ")[1].split()[0])
    over = float(breach.message.split(", ")[1].split()[0])
    assert loss >= 150 and over == pytest.approx(loss - 150, abs=0.01)
    assert breach.message.endswith("closed at market") and breach.position == 0
    state = wb.live.status(sid)
    assert state.status == "error" and state.message == breach.message and state.open_orders == 0
    assert wb.live.tick(sid).skipped == "the session is error"
    with store.session() as scope:
        flat = scope.scalar(select(store.Order.status).where(store.Order.session_id == sid, store.Order.leg == "flat"))
    assert flat == "closed"


def test_position_and_leverage_limits_name_the_leg_and_the_excess():
    from workbench.errors import RiskLimitBreached
    from workbench.live._plan import Leg
    from workbench.live._risk import check

    def legs(*rows):
        return [
            Leg(name, kind, side, Decimal(amount), Decimal(price), reduce)
            for name, kind, side, amount, price, reduce in rows
        ]

    common = dict(day_start=None, leverage=Decimal(2), max_leverage=Decimal(2), max_daily_loss=None, currency="USDT")
    ladder = legs(
        ("stop", "stop", "sell", "1", "90", True),
        ("dip0", "limit", "buy", "1", "95", False),
        ("dip1", "limit", "buy", "1", "90", False),
    )
    check(position=Decimal(1), equity=Decimal(1000), legs=ladder, max_position_size=270.0, **common)
    with pytest.raises(
        RiskLimitBreached,
        match=r"max_position_size 260 USDT: the dip1 buy of 1 at 90 would hold "
        r"270.00 USDT, 10.00 over the limit",
    ):
        check(position=Decimal(1), equity=Decimal(1000), legs=ladder, max_position_size=260.0, **common)
    with pytest.raises(
        RiskLimitBreached,
        match=r"max_leverage 2: the dip1 buy of 1 at 90 would hold 2.70x the "
        r"equity of 100.00 USDT, 0.70x over",
    ):
        check(position=Decimal(1), equity=Decimal(100), legs=ladder, max_position_size=None, **common)
    closing = legs(("exit", "market", "sell", "3", "100", True), ("entry", "market", "sell", "1", "100", False))
    check(position=Decimal(3), equity=Decimal(100), legs=closing, max_position_size=150.0, **common)  # a reversal
    with pytest.raises(RiskLimitBreached, match="max_leverage 2: the session trades at leverage 3, 1 above it"):
        check(
            position=Decimal(0),
            equity=Decimal(100),
            legs=[],
            max_position_size=None,
            **{**common, "leverage": Decimal(3)},
        )


# -- exactly once --------------------------------------------------------------------------


def _crash_at(monkeypatch, point: str, nth: int) -> list[str]:
    """Make the ``nth`` arrival at ``point`` raise Crash; the list records where it crashed."""
    hits, crashed = {"n": 0}, []

    def checkpoint(name, leg=None):
        if name == point:
            hits["n"] += 1
            if hits["n"] == nth:
                crashed.append(f"{name} {leg}")
                raise Crash(name)

    monkeypatch.setattr(_tick, "checkpoint", checkpoint)
    return crashed


@pytest.mark.parametrize("point", ["intent_recorded", "before_send", "after_send", "after_write", "fills_recorded"])
def test_a_crash_at_any_step_heals_on_the_next_tick_without_duplicates(db, monkeypatch, point):
    sid = _paper_session(f"crash {point}", "channel", BRISK, 80)
    crashed = _crash_at(monkeypatch, point, 3)
    outcomes = []
    for _ in range(400):
        try:
            report = wb.live.tick(sid)
        except Crash:
            outcomes.append("crash")
            continue
        if report.skipped:
            break
    assert crashed and outcomes == ["crash"]
    _same(_fills(sid), _backtest_fills("channel", BRISK, 80))  # no order twice, no fill lost
    with store.session() as scope:
        orders = scope.execute(
            select(store.Order.client_order_id, store.Order.status).where(store.Order.session_id == sid)
        ).all()
        paper = scope.execute(
            text(
                "SELECT client_order_id, count(*) FROM paper_orders o JOIN paper_accounts a "
                "ON a.id = o.account_id WHERE a.account = :a GROUP BY 1 HAVING count(*) > 1"
            ),
            {"a": f"session-{sid}"},
        ).all()
    assert paper == [] and all(status == "closed" for _, status in orders)
    assert wb.live.status(sid).message == "the replay reached the end of its candles"


@pytest.mark.slow
def test_resting_orders_survive_a_crash_after_the_exchange_accepted_them(db, monkeypatch):
    sid = _paper_session("crash ema", "ema_reversal", EMA, 100)
    crashed = _crash_at(monkeypatch, "after_send", 12)  # a dip level, a stop or a take-profit
    while True:
        try:
            report = wb.live.tick(sid)
        except Crash:
            continue
        if report.skipped:
            break
    assert crashed
    _same(_fills(sid), _backtest_fills("ema_reversal", EMA, 100))


@pytest.mark.slow
def test_a_killed_tick_process_heals_on_the_next_tick(db, tmp_path):
    """SIGKILL inside the tick, right after the exchange accepted an order and before the
    database heard of it; a fresh process ticks on."""
    sid = _paper_session("killed", "channel", BRISK, 40)
    script = tmp_path / "tick.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, signal
        import workbench as wb
        from workbench.live import _tick
        def checkpoint(name, leg=None):
            if name == "after_send":
                os.kill(os.getpid(), signal.SIGKILL)
        _tick.checkpoint = checkpoint
        while not wb.live.tick({sid}).placed:
            pass
    """)
    )
    done = subprocess.run([sys.executable, str(script)], env=dict(os.environ), timeout=120)
    assert done.returncode == -signal.SIGKILL
    with store.session() as scope:  # the order was accepted, the row still says "new"
        assert scope.scalar(select(func.count()).where(store.Order.session_id == sid, store.Order.status == "new")) == 1
    _run(sid)
    _same(_fills(sid), _backtest_fills("channel", BRISK, 40))


def test_one_tick_of_a_session_at_a_time(db):
    sid = _paper_session("locked", "channel", CHANNEL, 30)
    with store.session() as scope:
        scope.execute(select(func.pg_advisory_xact_lock(_tick._LOCK_CLASS, sid)))
        assert wb.live.tick(sid).skipped == "another tick of this session is running"
    assert not wb.live.tick(sid).skipped


# -- a ccxt session against the loopback Binance --------------------------------------------

KEY, SECRET = "CANARYKEY" + os.urandom(8).hex(), "CANARYSECRET" + os.urandom(16).hex()
CCXT_CHANNEL = {"entry_window": 6, "exit_window": 3, "direction": "long", "position_size": 0.5}


def _recent_candles(bars: int) -> pd.DataFrame:
    """Bundled candles moved to end an hour ago, so a signed request's real timestamp fits."""
    candles = _candles(bars).copy()
    last = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=1)
    candles.index = pd.date_range(end=last, periods=bars, freq="1h", name="time")
    candles.attrs["timeframe"] = "1h"
    return candles


@pytest.fixture
def binance(db):
    candles = _recent_candles(60)
    server = Binance(
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


def ccxt_session(
    server,
    name: str,
    template: str,
    params: dict,
    *,
    keys: tuple[str, str],
    market_type: str = "spot",
    timeout_ms: int = 1500,
    **settings,
) -> int:
    """A started session of a new saved strategy on the loopback Binance or Gate ``server`` (its
    account holds ``keys``), trading BTC/USDT from the first of ``server.candles_used``."""
    exchange = "gate" if isinstance(server, Gate) else "binance"
    urls = server.api_urls() if exchange == "gate" else server.config(market_type)["urls"]["api"]
    account = wb.vault.add_account(exchange, *keys, permissions="trade", label=name)
    wb.save_strategy(name, template, params)
    symbol = "BTC/USDT" if market_type == "spot" else "BTC/USDT:USDT"
    sid = wb.live.create_session(
        name,
        symbol,
        exchange=exchange,
        account=account,
        market_type=market_type,
        ccxt={"urls": urls, "config": {"enableRateLimit": False, "timeout": timeout_ms}},
        retry_max_wait=0.05,
        **settings,
    )
    wb.live.start(sid)
    with store.session() as scope:  # trade the candles from their start (as a replay would)
        scope.execute(
            text("UPDATE trading_sessions SET anchor_at = :a, history_from = :a WHERE id = :id"),
            {"a": server.candles_used.index[0].to_pydatetime(), "id": sid},
        )
    return sid


def _ccxt_session(server, name: str, **settings) -> int:
    return ccxt_session(server, name, "channel", CCXT_CHANNEL, keys=(KEY, SECRET), **settings)


def _tick_at(server, sid: int, bar: int) -> _tick.TickReport:
    """Tick as if bar ``bar`` just opened: the book trades at its open."""
    candles = server.candles_used
    server.set_price("BTC/USDT", str(candles["open"].iloc[bar]))
    return wb.live.tick(sid, now=candles.index[bar].to_pydatetime())


def _binance_orders(server) -> list[str]:
    return [o.client_id for o in server.spot.orders.values()]


@pytest.mark.slow
def test_a_binance_session_trades_its_target_through_faults_exactly_once(binance):
    """Real ccxt.binance, signed requests, the loopback book filling market orders at each bar's
    open. Faults while trading: an order accepted whose answer is lost, 5xx and 429 on reads,
    a lookup slower than the client's timeout, and a market order that only half fills."""
    sid = _ccxt_session(binance, "binance faults")
    for bar in range(1, 20):
        assert not _tick_at(binance, sid, bar).skipped
    before = len(binance.spot.orders)
    binance.lose_response("/api/v3/order", method="POST")  # accepted, answer lost
    binance.fail("/api/v3/account", status=503, times=2)  # 5xx, retried
    binance.fail("/api/v3/myTrades", status=429, times=1, headers={"Retry-After": "0.01"})
    binance.delay("/api/v3/order", 2.0, method="GET")  # slower than the 1.5 s timeout
    binance.spot.partial_next("0.5")  # the next market order half fills
    for bar in range(20, 59):
        assert _tick_at(binance, sid, bar).status == "running"
    orders = list(binance.spot.orders.values())
    ids = [o.client_id for o in orders]
    assert len(ids) == len(set(ids)) == len(binance.requests_to("/api/v3/order", "POST")), "an order was sent twice"
    assert len(orders) - before >= 4  # the faults hit a session that kept trading
    half = next(o for o in orders[before:] if o.filled < o.amount)
    with store.session() as scope:  # the ledger knows it as the exchange does: expired, half filled
        row = scope.scalars(select(store.Order).where(store.Order.client_order_id == half.client_id)).one()
        assert (half.status, row.status, row.filled) == ("expired", "expired", half.filled)
        recorded = scope.scalar(
            select(func.count())
            .select_from(store.Fill)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == sid)
        )
    assert recorded == len(binance.spot.trades)  # every fill on the exchange is in the database, once
    assert binance.bans == []  # the 429's Retry-After was waited out
    result = wb.backtest("channel", binance.candles_used.iloc[:59], CCXT_CHANNEL)  # the simulation's view
    held = binance.spot.balances.get("BTC", Decimal(0))
    assert float(held) == pytest.approx(result.position.iloc[-1], abs=3e-5)  # Binance's 0.00001 BTC steps
    assert wb.live.status(sid).status == "running"


def test_a_persistent_fault_ends_in_error_not_a_crash_loop(binance):
    sid = _ccxt_session(binance, "binance down", max_failures=2, retry_attempts=2)
    binance.fail("/api/v3/klines", status=503)
    for _ in range(2):
        with pytest.raises(ExchangeUnavailable):
            _tick_at(binance, sid, 5)
    state = wb.live.status(sid)
    assert state.status == "error" and "2 ticks in a row failed" in state.message
    assert "503" in state.message or "unavailable" in state.message
    assert state.wind_down_pending == "protect"  # the venue never answered the wind-down either
    posted = len(binance.requests_to("/api/v3/order", "POST"))
    # no loop: the next runs only try the wind-down again, and trade nothing
    assert "its wind-down was tried again" in wb.live.tick(sid).skipped
    binance.clear_faults()
    assert "its wind-down was tried again: nothing rested or was held" in wb.live.tick(sid).skipped
    assert wb.live.tick(sid).skipped == "the session is error"
    assert len(binance.requests_to("/api/v3/order", "POST")) == posted
    wb.live.resume(sid)
    assert not _tick_at(binance, sid, 5).skipped


def test_an_authentication_failure_stops_at_once_and_keys_appear_nowhere(binance, caplog):
    caplog.set_level(logging.DEBUG)
    sid = _ccxt_session(binance, "canary")
    for bar in range(1, 25):
        _tick_at(binance, sid, bar)
    binance.api_key = "revoked"  # the exchange no longer accepts the key
    with pytest.raises(AuthenticationFailed):
        _tick_at(binance, sid, 25)
    state = wb.live.status(sid)
    assert state.status == "error" and "authentication failed" in state.message
    assert "cannot succeed by retrying" in state.message
    with store.owner_session() as scope:  # every text the database holds, as the owner sees it
        tables = scope.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        dump = "\n".join(str(row) for table in tables for row in scope.execute(text(f'SELECT * FROM "{table}"')))
    shown = "\n".join([caplog.text, dump, str(state), wb.live.sessions().to_string(), repr(wb.live.tick(sid))])
    assert "X-MBX-APIKEY" in caplog.text and vault.mask(KEY) in dump  # the places searched hold the traces
    assert KEY not in shown and SECRET not in shown
