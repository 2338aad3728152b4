"""backtest and sweep on the real bundled candles: vectorbt agrees, sweeps equal backtests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import workbench as wb

NO_LIMITS = {"max_position_size": None, "max_daily_loss": None}
CASES = [
    ("channel", {"entry_window": 48, "exit_window": 24}),
    ("channel", {"entry_window": 30, "exit_window": 60, "direction": "both"}),
    ("channel", {"entry_window": 20, "exit_window": 10, "mode": "reversion", "direction": "short"}),
    ("ema_reversal", {"ema_window": 24, "dip_levels": [1.0, 2.0, 3.0], "stop_loss": 4.0}),
    ("market_making", {"spread": 1.0, "inventory": "both"}),
    ("market_making", {"spread": 0.6, "reference": "ema", "ema_window": 12}),
]


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return wb.load_candles().iloc[-4000:]  # the last ~5.5 months of the bundled BTC/USD hours


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


@pytest.mark.slow
@pytest.mark.parametrize("template, params", CASES)
def test_vectorbt_replays_the_same_fills_to_the_same_equity_and_metrics(candles, template, params):
    result = wb.backtest(template, candles, params, funding=None)  # vectorbt has no funding
    portfolio = result.portfolio
    value = portfolio.value().to_numpy()
    assert np.max(np.abs(value / result.equity.to_numpy() - 1)) < 1e-9
    returns = portfolio.returns().vbt.returns(freq="1h")
    m = result.metrics
    for ours, theirs in [
        (m["sharpe"], returns.sharpe_ratio()),
        (m["sortino"], returns.sortino_ratio()),
        (m["cagr"], returns.annualized()),
        (m["calmar"], returns.calmar_ratio()),
        (m["max_drawdown"], -portfolio.max_drawdown()),
        (m["total_return"], portfolio.total_return()),
        (m["fees_paid"], portfolio.orders.fees.sum()),
    ]:
        assert _close(ours, theirs), (ours, theirs)
    assert len(portfolio.orders.records) == len(result.fills)


@pytest.mark.parametrize("rate", [0.05, -0.01])
def test_a_risk_free_rate_is_taken_out_of_sharpe_and_sortino_as_vectorbt_does(candles, rate):
    plain = wb.backtest("ema_reversal", candles, {"ema_window": 24})
    result = wb.backtest("ema_reversal", candles, {"ema_window": 24}, risk_free=rate)
    per_bar = (1 + rate) ** (1 / (365 * 24)) - 1  # the annual rate compounded down to an hour
    returns = result.portfolio.returns().vbt.returns(freq="1h")
    assert _close(result.metrics["sharpe"], returns.sharpe_ratio(risk_free=per_bar))
    assert _close(result.metrics["sortino"], returns.sortino_ratio(required_return=per_bar))
    assert (result.metrics["sharpe"] < plain.metrics["sharpe"]) == (rate > 0)
    unchanged = {k: v for k, v in result.metrics.items() if k not in ("sharpe", "sortino")}
    assert unchanged == {k: v for k, v in plain.metrics.items() if k not in ("sharpe", "sortino")}
    with pytest.raises(wb.ParameterError, match=r"risk_free: 4 is not allowed; expected a number from -0.5 to 1"):
        wb.backtest("ema_reversal", candles, risk_free=4)


def test_each_metric_is_written_to_its_own_named_slot():
    from workbench.engine import core as engine

    slots = {name: getattr(engine, f"M_{name.upper()}") for name in engine.METRIC_NAMES}
    assert sorted(slots.values()) == list(range(engine.N_METRICS))
    assert all(engine.METRIC_NAMES[slot] == name for name, slot in slots.items())


@pytest.mark.slow
def test_channel_trades_equal_vectorbts_standard_from_signals_pipeline(candles):
    import vectorbt as vbt

    n, m, fees, slippage = 48, 24, 0.001, 0.0005
    result = wb.backtest("channel", candles, {"entry_window": n, "exit_window": m}, fees=fees, slippage=slippage)
    high, low, close = candles["high"], candles["low"], candles["close"]
    entries = close > high.rolling(n).max().shift(1)
    exits = close < low.rolling(m).min().shift(1)
    portfolio = vbt.Portfolio.from_signals(
        close,
        entries.shift(1, fill_value=False),
        exits.shift(1, fill_value=False),
        price=candles["open"],
        fees=fees,
        slippage=slippage,
        init_cash=10_000,
        freq="1h",
    )
    theirs = portfolio.trades.records_readable
    ours = result.trades
    assert len(ours) == int(portfolio.trades.closed.count())
    closed = theirs[theirs["Status"] == "Closed"]
    assert list(ours["entry_time"]) == list(closed["Entry Timestamp"])
    assert list(ours["exit_time"]) == list(closed["Exit Timestamp"])
    assert _close(result.equity.iloc[-1], portfolio.value().iloc[-1])


def test_leveraged_runs_have_no_vectorbt_portfolio_and_say_why(candles):
    result = wb.backtest("ema_reversal", candles, {"leverage": 5})
    with pytest.raises(wb.WorkbenchError, match="leverage 5: vectorbt's open-source Portfolio cannot borrow"):
        _ = result.portfolio


@pytest.mark.parametrize(
    "template, grid",
    [
        (
            "channel",
            {"entry_window": range(10, 110, 10), "exit_window": [5, 12, 24, 48], "direction": ["long", "both"]},
        ),
        (
            "ema_reversal",
            {
                "ema_window": [12, 50],
                "stop_loss": [0.5, 2.0, 5.0],
                "leverage": [1, 3, 20],
                "take_profit": [[1.0], [1.0, 2.0, 4.0]],
            },
        ),
        ("market_making", {"spread": [0.2, 0.8, 2.0], "order_size": [0.05, 0.2], "inventory": ["long_only", "both"]}),
    ],
)
@pytest.mark.slow
def test_every_sweep_row_equals_the_backtest_of_that_combination(candles, template, grid):
    table = wb.sweep(template, candles, grid, progress=False)
    expected = int(np.prod([len(list(v)) for v in grid.values()]))
    assert len(table) == expected and table.attrs["completed"] == expected
    ranked = table["sharpe"].dropna()
    assert ranked.is_monotonic_decreasing
    for rank in np.random.default_rng(7).choice(table.index, size=6, replace=False):
        row = table.loc[rank]
        params = {name: row[name] for name in grid}
        metrics = wb.backtest(template, candles, params).metrics
        for name, value in metrics.items():
            assert _close(value, float(row[name])), (params, name, value, row[name])


def test_sweep_fixed_values_and_defaults(candles):
    table = wb.sweep("channel", candles, {"entry_window": [20, 40], "exit_window": 10}, progress=False)
    assert table["exit_window"].tolist() == [10, 10]
    assert set(table.columns) >= {"entry_window", "exit_window", "sharpe", "max_drawdown", "trades"}


def test_an_interrupted_sweep_keeps_the_rows_already_done(candles, monkeypatch, request):
    from workbench.backtest import _kernel

    real, calls = _kernel._run_many, []

    def run_then_press_ctrl_c(*args):  # a real SIGINT, while the third chunk is finishing
        real(*args)
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_kernel, "_run_many", run_then_press_ctrl_c)
    # Ctrl-C raises KeyboardInterrupt, as in a terminal or a kernel (a test runner's worker may ignore SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    grid = {"entry_window": range(2, 602), "exit_window": [5, 10]}  # 1200 runs, 4 per chunk
    with pytest.warns(UserWarning, match=r"sweep interrupted: returning the 8 of 1200"):
        table = wb.sweep("channel", candles, grid, progress=False, chunk_size=4)
    # the chunk in flight when Ctrl-C arrived is dropped; the two before it are kept
    assert table.attrs["interrupted"] and len(table) == 8 == table.attrs["completed"]
    first = table.sort_values(["entry_window", "exit_window"]).iloc[0]
    again = wb.backtest(
        "channel", candles, {"entry_window": int(first["entry_window"]), "exit_window": int(first["exit_window"])}
    )
    assert _close(again.metrics["sharpe"], first["sharpe"])


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda c: wb.backtest("channel", c, fees=-0.1), "fees (maker): -0.1 is not allowed"),
        (lambda c: wb.backtest("channel", c, fees={"makr": 0.1}), "fees: unknown key 'makr'"),
        (lambda c: wb.backtest("channel", c, slippage=0.5), "slippage: 0.5 is not allowed"),
        (lambda c: wb.backtest("channel", c, init_cash=0), "init_cash: 0 is not allowed"),
        (lambda c: wb.backtest("channel", c, risk={"max_daily_loss": -5}), "risk limit 'max_daily_loss': -5"),
        (lambda c: wb.backtest("channel", c, risk={"max_loss": 5}), "unknown risk limit 'max_loss'"),
        (lambda c: wb.sweep("channel", c, {"entry_window": []}), "grid axis 'entry_window' has no values"),
        (lambda c: wb.sweep("channel", c, {"entry_window": [10, 1]}), "'entry_window': 1 is not allowed"),
        (lambda c: wb.sweep("channel", c, {}, sort_by="alpha"), "sort_by: 'alpha' is not a metric"),
    ],
)
def test_bad_settings_are_refused_with_a_precise_message(candles, call, fragment):
    with pytest.raises(wb.ParameterError) as info:
        call(candles)
    assert fragment in str(info.value)


def test_figure_has_price_equity_and_drawdown_on_one_time_axis(candles):
    result = wb.backtest("channel", candles)
    figure = result.figure
    price, equity, drawdown = figure.children
    assert equity.x_range is price.x_range and drawdown.x_range is price.x_range
    scatter = [r for r in price.renderers if "scatter" in type(r.glyph).__name__.lower()]
    assert sum(len(r.data_source.data["price"]) for r in scatter) == len(result.fills)


def test_result_exposes_the_strategy_json_and_stats(candles):
    result = wb.backtest("ema_reversal", candles, {"leverage": 3})
    assert result.strategy == {"type": "ema_reversal", "params": result.params, "risk_limits": NO_LIMITS}
    stats = result.stats()
    assert stats.loc["Closed trades", "ema_reversal"] == str(int(result.metrics["trades"]))
    assert "Sharpe ratio" in result._repr_html_()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_backtest_prints_json_metrics_equal_to_the_api(tmp_path, candles):
    path = tmp_path / "candles.csv"
    candles.reset_index().to_csv(path, index=False)
    run = _cli("backtest", "channel", "--candles", str(path), "--params", '{"entry_window": 30}', "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = wb.backtest("channel", candles, {"entry_window": 30}).metrics
    assert out["strategy"]["params"]["entry_window"] == 30
    assert _close(out["metrics"]["sharpe"], expected["sharpe"])
    venue = _cli(
        "backtest",
        "channel",
        "--candles",
        str(path),
        "--fees",
        "binance swap",
        "--market",
        "binance BTC/USDT:USDT",
        "--risk-free",
        "0.04",
        "--json",
    )
    assert venue.returncode == 0, venue.stderr
    expected = wb.backtest("channel", candles, fees="binance swap", market="binance BTC/USDT:USDT", risk_free=0.04)
    assert _close(json.loads(venue.stdout)["metrics"]["sharpe"], expected.metrics["sharpe"])


@pytest.mark.slow
def test_cli_sweep_ranks_a_grid(tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"entry_window": [20, 40, 80], "exit_window": [10, 20]}))
    run = _cli("sweep", "channel", "--candles", "bundled", "--grid", f"@{grid}", "--json", "--top", "3")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["sharpe"] >= rows[1]["sharpe"] >= rows[2]["sharpe"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["backtest", "channel", "--candles", "bundled", "--params", '{"entry_window": 1}'],
            "workbench backtest: error: parameter 'entry_window': 1 is not allowed",
        ),
        (
            ["backtest", "channel", "--candles", "bundled", "--params", "{oops"],
            "workbench backtest: error: --params: invalid JSON at line 1 column 2",
        ),
        (["backtest", "nope", "--candles", "bundled"], "workbench backtest: error: unknown template 'nope'"),
        (["sweep", "channel", "--candles", "/nonexistent.csv", "--grid", "{}"], "workbench sweep: error:"),
        (
            ["backtest", "channel", "--candles", "bundled", "--fees", "binance swap vip90"],
            "workbench backtest: error: fees: binance swap has tiers vip0 to vip9 in ccxt's schedule; got vip90",
        ),
    ],
)
@pytest.mark.slow
def test_cli_bad_input_exits_2_with_one_clear_line(args, message):
    run = _cli(*args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


# -- the venue's fees and market rules ---------------------------------------------------------


def test_a_venues_fee_schedule_is_taken_from_ccxt_by_name(candles):
    import ccxt

    spot, linear = ccxt.binance().describe()["fees"]["trading"], ccxt.binance().describe()["fees"]["linear"]["trading"]
    gate_tiers = ccxt.gate().describe()["fees"]["swap"]["tiers"]
    params = {"entry_window": 48, "exit_window": 24}
    named = wb.backtest("channel", candles, params, fees="binance")
    explicit = wb.backtest("channel", candles, params, fees={"maker": spot["maker"], "taker": spot["taker"]})
    assert named.metrics == explicit.metrics and named.settings["fee_taker"] == 0.001
    swap = wb.backtest("channel", candles, params, fees="binance", market="binance BTC/USDT:USDT")
    assert (swap.settings["fee_maker"], swap.settings["fee_taker"]) == (linear["maker"], linear["taker"])
    vip = wb.backtest("channel", candles, params, fees="gate swap vip2")
    assert (vip.settings["fee_maker"], vip.settings["fee_taker"]) == (
        gate_tiers["maker"][2][1],
        gate_tiers["taker"][2][1],
    )
    with pytest.raises(wb.ParameterError, match=r"fees: 'kraken' names no venue"):
        wb.backtest("channel", candles, params, fees="kraken")
    with pytest.raises(
        wb.ParameterError, match=r"fees: binance spot has tiers vip0 to vip\d+ in ccxt's schedule; got vip99"
    ):
        wb.backtest("channel", candles, params, fees="binance spot vip99")


@pytest.mark.parametrize(
    "template, params",
    [
        (
            "ema_reversal",
            {"ema_window": 24, "dip_levels": [1.0, 2.0, 3.0], "leverage": 3, "take_profit": [1.0, 2.0, 3.0]},
        ),
        ("market_making", {"spread": 0.6, "inventory": "both"}),
        ("channel", {"entry_window": 48, "exit_window": 24, "direction": "both"}),
    ],
)
def test_a_market_s_rules_make_every_fill_one_the_venue_accepts(candles, template, params):
    from workbench.backtest import MarketRules

    rules = MarketRules(
        "BTC/USDT:USDT", amount_step=0.001, price_step=0.5, min_amount=0.002, min_cost=100.0, max_leverage=125.0
    )
    fees = {"maker": 0.0002, "taker": 0.0005}  # maker fills (at a resting limit) told apart by their fee
    result = wb.backtest(template, candles, params, market=rules, init_cash=10_000, fees=fees)
    fills = result.fills
    assert len(fills) > 10
    steps = fills["size"].abs() / rules.amount_step
    assert np.allclose(steps, steps.round(), rtol=0, atol=1e-6)  # whole amount steps
    entries = fills[fills["kind"] == "entry"]
    assert (entries["size"].abs() >= rules.min_amount - 1e-12).all()
    assert (entries["size"].abs() * entries["price"] >= rules.min_cost - 1e-9).all()
    makers = fills[
        (fills["fee"] > 0)
        & np.isclose(fills["fee"], fills["size"].abs() * fills["price"] * result.settings["fee_maker"], rtol=1e-9)
    ]
    ticks = makers["price"] / rules.price_step
    assert np.allclose(ticks, ticks.round(), rtol=0, atol=1e-6)  # limits on the tick
    assert len(makers) or template == "channel"  # channel trades at market only
    plain = wb.backtest(template, candles, params, init_cash=10_000, fees=fees)
    assert result.metrics["final_equity"] != plain.metrics["final_equity"]


def test_an_order_below_the_market_s_minimum_is_not_placed_and_leverage_stays_within_its_maximum(candles):
    params = {"entry_window": 48, "exit_window": 24}
    # 50 USDT of margin at leverage 1 is below Binance USDⓈ-M's 100 USDT minimum notional
    small = wb.backtest("channel", candles, params, init_cash=50, market="binance BTC/USDT:USDT")
    assert small.metrics["fills"] == 0 and small.metrics["final_equity"] == 50
    assert wb.backtest("channel", candles, params, init_cash=50).metrics["fills"] > 0
    with pytest.raises(wb.ParameterError, match=r"leverage: 101 is above the BTC/USDT:USDT market's maximum of 100"):
        wb.backtest("ema_reversal", candles, {"leverage": 101}, market="gate BTC/USDT:USDT")
    with pytest.raises(
        wb.ParameterError,
        match=r"leverage: 3 is above the BTC/USDT market's maximum of 1 \(a spot "
        r"market; trade a perpetual",
    ):
        wb.backtest("ema_reversal", candles, {"leverage": 3}, market="gate BTC/USDT")
    with pytest.raises(wb.ParameterError, match=r"market: 'binance DOGE/USDT' is not in the bundled snapshot"):
        wb.backtest("channel", candles, params, market="binance DOGE/USDT")


def test_a_listing_reproduces_a_backtest_with_its_market_rules(candles):
    from workbench.market._snapshot import backtest_options

    params = {"ema_window": 24, "leverage": 2}
    result = wb.backtest(
        "ema_reversal", candles, params, fees="binance swap", market="binance BTC/USDT:USDT", risk_free=0.03
    )
    again = wb.backtest("ema_reversal", candles, params, **backtest_options(result.settings))
    assert again.metrics == result.metrics


def test_a_market_that_closes_is_annualised_over_its_real_bars_and_its_calendar_time():
    from zoneinfo import ZoneInfo

    weeks = 8
    first = pd.Timestamp("2024-01-07 17:00", tz=ZoneInfo("America/New_York"))  # a Sunday's FX open
    times = pd.DatetimeIndex(
        np.concatenate(
            [
                pd.date_range(first + pd.Timedelta(days=7 * w), periods=120, freq="1h").tz_convert("UTC").as_unit("ns")
                for w in range(weeks)
            ]
        ),
        name="time",
    )
    rng = np.random.default_rng(5)
    close = 1.08 + np.cumsum(rng.normal(0, 0.0015, len(times)))
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.0004,
            "low": np.minimum(open_, close) - 0.0004,
            "close": close,
            "volume": 1.0,
        },
        index=times,
    )
    candles = wb.validate_candles(frame, calendar="24/5")
    result = wb.backtest("channel", candles, {"entry_window": 12, "exit_window": 6}, fees=0.0)
    assert len(result.equity) == 120 * weeks  # no weekend bar reached the kernel
    per_year = wb.data.bars_per_year(candles)
    assert 6_250 < per_year < 6_260  # 120 bars a week, not 168
    returns = result.equity.pct_change().fillna(result.equity.iloc[0] / 10_000 - 1)
    assert _close(result.metrics["sharpe"], returns.mean() / returns.std() * np.sqrt(per_year), rel=1e-6)
    span_years = (times[-1] - times[0] + pd.Timedelta(hours=1)) / pd.Timedelta(days=365)  # weekends included
    assert _close(result.metrics["cagr"], (1 + result.metrics["total_return"]) ** (1 / span_years) - 1, rel=1e-9)


# -- funding of perpetual positions ---------------------------------------------------------------


def test_a_short_pays_or_receives_funding_at_each_settlement_it_is_held_through():
    from _bars import FREE, bars

    # flat at 100 for a day of hours from 23:00: the short opens at the 00:00 open, after that
    # bar's settlement (the position held into a bar pays), and is held through 08:00 and 16:00
    candles = bars([(100.0, 100.0, 100.0, 100.0)] * 24, start="2023-12-31 23:00")
    rule = {"rules": "sell 10 units when close >= 100"}
    result = wb.backtest("rules", candles, rule, **FREE, funding=0.0003)
    assert result.fills["time"].tolist() == [pd.Timestamp("2024-01-01 00:00", tz="UTC")]
    # a short receives a positive rate: 10 units x 100 x 0.0003 at 08:00 and at 16:00
    assert result.metrics["funding_paid"] == pytest.approx(-0.6)
    assert result.equity.iloc[-1] == pytest.approx(1000.6)
    assert result.equity[pd.Timestamp("2024-01-01 08:00", tz="UTC")] == pytest.approx(1000.3)
    negative = wb.backtest("rules", candles, rule, **FREE, funding=-0.0003)
    assert negative.metrics["funding_paid"] == pytest.approx(0.6)
    none = wb.backtest("rules", candles, rule, **FREE, funding=None)
    assert none.metrics["funding_paid"] == 0 and none.equity.iloc[-1] == 1000
    default = wb.backtest("rules", candles, rule, **FREE)  # 0.01 % per 8 hours unless told otherwise
    assert default.metrics["funding_paid"] == pytest.approx(-0.2)
    with pytest.raises(wb.WorkbenchError, match=r"settled -0.60 of funding: vectorbt's open-source Portfolio"):
        _ = result.portfolio
    # settlement by settlement, and on the chart: received at the 08:00 and 16:00 opens
    assert result.funding[result.funding != 0].to_dict() == {
        pd.Timestamp("2024-01-01 08:00", tz="UTC"): pytest.approx(-0.3),
        pd.Timestamp("2024-01-01 16:00", tz="UTC"): pytest.approx(-0.3),
    }
    titles = [panel.title.text for panel in result.figure.children]
    assert titles[-1].startswith("Funding paid") and len(titles) == 4
    assert len(none.figure.children) == 3 and not none.funding.any()  # no funding, no panel


def test_the_funding_each_bar_settled_sums_to_funding_paid_in_every_template():
    candles = wb.load_candles().loc["2018-06":"2018-12"]
    runs = [
        ("channel", {"entry_window": 48, "exit_window": 24, "direction": "both"}),
        ("ema_reversal", {"leverage": 5}),
        ("market_making", {}),
        ("rules", {"rules": "leverage 3\nbuy 50% when close > SMA(20)\nsell 50% when close < SMA(20)"}),
    ]
    for template, params in runs:
        result = wb.backtest(template, candles, params, funding=0.0003)
        assert result.funding.sum() == pytest.approx(result.metrics["funding_paid"], rel=1e-9, abs=1e-9), template
    assert any(wb.backtest(t, candles, p, funding=0.0003).metrics["funding_paid"] for t, p in runs)


@pytest.mark.slow
def test_a_funding_series_is_paid_at_the_bars_holding_its_settlement_times_and_spot_longs_pay_none():
    from _bars import FREE, bars

    candles = bars([(100.0, 100.0, 100.0, 100.0)] * 12, start="2024-01-01 02:00", freq="1h")
    series = pd.Series(
        [0.001, 0.002, 0.5 / 100],
        index=pd.to_datetime(["2024-01-01 08:00", "2024-01-01 09:30", "2024-01-02 00:00"], utc=True),
    )
    short = wb.backtest("rules", candles, {"rules": "sell 10 units when close >= 100"}, **FREE, funding=series)
    assert short.metrics["funding_paid"] == pytest.approx(-(10 * 100 * 0.001 + 10 * 100 * 0.002))  # not the third
    levered = wb.backtest(
        "rules", candles, {"rules": "leverage 2\nbuy 10 units when close >= 100"}, **FREE, funding=series
    )
    assert levered.metrics["funding_paid"] == pytest.approx(10 * 100 * 0.003)  # a perpetual long pays
    spot = wb.backtest("rules", candles, {"rules": "buy 10 units when close >= 100"}, **FREE, funding=series)
    assert spot.metrics["funding_paid"] == 0  # an unleveraged long is spot
    with pytest.raises(wb.ParameterError, match=r"funding: the rate at 2024-01-01 08:00:00\+00:00 is 0.5; expected"):
        wb.backtest("rules", candles, {"rules": "sell 10 units when close >= 100"}, funding=series * 500)
    with pytest.raises(wb.ParameterError, match=r"funding: 'yes' is not allowed; expected a rate per 8 hours"):
        wb.backtest("rules", candles, {"rules": "sell 10 units when close >= 100"}, funding="yes")
    table = wb.sweep("rules", candles, {"rules": "sell 10 units when close >= 100"}, funding=series, progress=False)
    assert table["funding_paid"].iloc[0] == short.metrics["funding_paid"]  # a sweep row is its backtest
