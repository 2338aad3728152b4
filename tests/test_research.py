"""The research tools: is a backtest's edge more than the luck of the search?"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import ParameterError

NORMAL = NormalDist()


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return wb.load_candles().iloc[:3000]


@pytest.fixture(scope="module")
def channel(candles) -> wb.BacktestResult:
    return wb.backtest("channel", candles, {"entry_window": 48, "exit_window": 24})


# --- deflated and probabilistic Sharpe ratio ---------------------------------------------------------------------

def test_the_deflated_sharpe_ratio_reproduces_the_papers_numerical_example():
    # Bailey and López de Prado, "The Deflated Sharpe Ratio" (JPM 40(5), 2014; SSRN 2460551), section
    # "A numerical example": annualised SR 2.5 over T = 1250 daily returns (five years of 250 days), skew -3,
    # kurtosis 10, the best of N = 100 trials whose annualised Sharpe ratios have variance 1/2. The paper gets
    # SR0 = 0.1132 per day and DSR = 0.9004. The same formula is quantstrat's `.deflatedSharpe` (R,
    # braverock/quantstrat R/deflated.Sharpe.R, after quantstrattrader.wordpress.com/2015/09/24) and vectorbt's
    # `returns.metrics.deflated_sharpe_ratio`, checked below on the same inputs.
    from vectorbt.returns.metrics import deflated_sharpe_ratio

    result = wb.deflated_sharpe(2.5, trials=100, sharpe_std=math.sqrt(0.5), n=1250, skew=-3, kurtosis=10,
                                periods_per_year=250)
    assert result.expected_max_sharpe == pytest.approx(0.1132, abs=5e-5)
    assert result.probability == pytest.approx(0.9004, abs=5e-5)
    assert result.sharpe == pytest.approx(2.5 / math.sqrt(250))
    assert result.annualised_sharpe == pytest.approx(2.5)
    assert result.annualised_expected_max_sharpe == pytest.approx(0.1132 * math.sqrt(250), abs=1e-3)
    assert (result.trials, result.n, result.skew, result.kurtosis) == (100, 1250, -3.0, 10.0)
    assert not result.passed() and result.passed(threshold=0.9)
    assert result.probability == pytest.approx(deflated_sharpe_ratio(
        est_sharpe=2.5 / math.sqrt(250), var_sharpe=0.5 / 250, nb_trials=100, backtest_horizon=1250, skew=-3,
        kurtosis=10), abs=1e-12)


def test_on_iid_normal_returns_the_psr_against_zero_is_the_closed_form():
    returns = np.random.default_rng(7).normal(0.0005, 0.01, 2000)
    sharpe = returns.mean() / returns.std(ddof=1)
    closed_form = NORMAL.cdf(sharpe * math.sqrt(len(returns) - 1) / math.sqrt(1 + sharpe ** 2 / 2))
    assert wb.probabilistic_sharpe(returns, skew=0, kurtosis=3) == pytest.approx(closed_form, abs=1e-12)
    assert wb.probabilistic_sharpe(sharpe, n=len(returns)) == pytest.approx(closed_form, abs=1e-12)
    # measured moments of normal returns are close to 0 and 3: the PSR barely moves
    assert wb.probabilistic_sharpe(returns) == pytest.approx(closed_form, abs=0.01)


def test_the_psr_of_worthless_returns_passes_95_percent_about_one_time_in_twenty():
    rng = np.random.default_rng(11)
    passed = [wb.probabilistic_sharpe(rng.normal(0.0, 0.01, 250)) > 0.95 for _ in range(2000)]
    assert np.mean(passed) == pytest.approx(0.05, abs=0.015)


def test_more_trials_lower_the_deflated_sharpe_ratio():
    returns = np.random.default_rng(3).normal(0.001, 0.01, 1000)
    found = [wb.deflated_sharpe(returns, trials=trials) for trials in (1, 2, 10, 100, 1000, 10_000)]
    probabilities = [f.probability for f in found]
    assert probabilities == sorted(probabilities, reverse=True) and len(set(probabilities)) == len(probabilities)
    assert [f.expected_max_sharpe for f in found] == sorted(f.expected_max_sharpe for f in found)
    # one trial chose nothing: the DSR is the PSR against 0
    assert found[0].expected_max_sharpe == 0 and found[0].probability == wb.probabilistic_sharpe(returns)


def test_the_trials_sharpe_ratios_give_their_count_and_spread():
    returns = pd.Series(np.random.default_rng(5).normal(0.001, 0.01, 500))
    trial_sharpes = pd.Series([0.5, 1.0, 1.5, np.nan, 2.0])  # annualised, as a sweep table's column
    by_values = wb.deflated_sharpe(returns, trials=trial_sharpes, periods_per_year=365)
    by_count = wb.deflated_sharpe(returns, trials=4, sharpe_std=trial_sharpes.std(), periods_per_year=365)
    assert by_values == by_count
    assert by_values.trials == 4
    assert by_values.sharpe_std == pytest.approx(trial_sharpes.std() / math.sqrt(365))


def test_a_backtest_is_measured_as_its_sharpe_metric(channel):
    result = wb.deflated_sharpe(channel, trials=50)
    assert result.periods_per_year == 8760
    assert result.n == len(channel.equity)
    assert result.annualised_sharpe == pytest.approx(channel.metrics["sharpe"], rel=1e-9)
    assert 0 <= result.probability <= 1
    assert wb.probabilistic_sharpe(channel, benchmark=channel.metrics["sharpe"]) == pytest.approx(0.5)


@pytest.mark.parametrize("call, names", [
    (lambda r: wb.deflated_sharpe(r, trials=0), "trials: 0"),
    (lambda r: wb.deflated_sharpe(r, trials=True), "trials: True"),
    (lambda r: wb.deflated_sharpe(r, trials=[1.0]), "trials: 1 finite"),
    (lambda r: wb.deflated_sharpe(r, trials=10, sharpe_std=-1.0), "sharpe_std: -1.0"),
    (lambda r: wb.deflated_sharpe(r, trials=10, n=100), "n: 100"),
    (lambda r: wb.deflated_sharpe(1.5, trials=10), "n: missing"),
    (lambda r: wb.deflated_sharpe(1.5, trials=10, n=1), "n: 1"),
    (lambda r: wb.deflated_sharpe(np.zeros(10), trials=10), "returns: all returns are equal"),
    (lambda r: wb.deflated_sharpe("1.5", trials=10), "returns_or_sharpe: a str"),
    (lambda r: wb.probabilistic_sharpe(r, periods_per_year=0), "periods_per_year: 0"),
    (lambda r: wb.probabilistic_sharpe(0.5, n=100, kurtosis=0), "kurtosis: 0 is not allowed"),
    (lambda r: wb.probabilistic_sharpe(0.5, n=100, skew=5, kurtosis=1), "skew 5 and kurtosis 1"),
    (lambda r: wb.deflated_sharpe(r, trials=5).passed(threshold=1.5), "threshold: 1.5"),
])
def test_bad_inputs_give_one_line_naming_the_value(call, names):
    returns = np.random.default_rng(1).normal(0.001, 0.01, 100)
    with pytest.raises(ParameterError) as caught:
        call(returns)
    message = str(caught.value)
    assert names in message and "\n" not in message


# --- Monte Carlo -------------------------------------------------------------------------------------------------

def _result_of_trades(trade_returns: list[float], init_cash: float = 1000.0, gap: int = 0) -> wb.BacktestResult:
    """A backtest whose long trades return exactly ``trade_returns`` of the equity they were entered with: each
    enters at 100 with all the equity and exits one bar later, ``gap`` flat bars between trades; no fees."""
    from workbench.backtest import _engine as engine

    equity, fills, cash = [], [], init_cash
    for r in trade_returns:
        for _ in range(gap):
            equity.append(cash)
        size = cash / 100.0
        fills.append((len(equity), size, 100.0, 0.0, engine.FILL_KINDS.index("entry")))
        equity.append(cash)
        cash *= 1.0 + r
        fills.append((len(equity), -size, 100.0 * (1.0 + r), 0.0, engine.FILL_KINDS.index("exit")))
        equity.append(cash)
    equity = equity or [init_cash] * 10
    index = pd.date_range("2024-01-01", periods=len(equity), freq="1h", tz="UTC", name="time")
    candles = pd.DataFrame({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1.0}, index=index)
    metrics = {"fills": len(fills), "ruined": 0, "final_equity": equity[-1]}
    return wb.BacktestResult(template=wb.get_template("channel"), params={}, risk={},
                             settings={"init_cash": init_cash, "risk_free": 0.0}, candles=candles, metrics=metrics,
                             equity=np.array(equity), position=np.zeros(len(equity)),
                             fills=np.array(fills, dtype=np.float64).reshape(-1, 5), leverage=1.0)


def test_the_trade_bootstrap_compounds_trade_returns_and_is_deterministic_with_a_seed():
    result = _result_of_trades([0.10, -0.05, 0.02, -0.20, 0.08])
    np.testing.assert_allclose(result.trades["pnl"] / np.array([1000, 1100, 1045, 1065.9, 852.72]),
                               [0.10, -0.05, 0.02, -0.20, 0.08])
    first, again = wb.monte_carlo(result, 300, seed=4), wb.monte_carlo(result, 300, seed=4)
    pd.testing.assert_frame_equal(first.paths, again.paths)
    assert not first.paths.equals(wb.monte_carlo(result, 300, seed=5).paths)
    assert list(first.paths.columns) == ["final_equity", "total_return", "max_drawdown", "time_under_water",
                                         "min_equity"]
    assert len(first.paths) == 300 and first.unit == "trades" and first.block is None
    # every path is five of the trades' returns compounded: a product of five of them
    products = {round(1000 * np.prod(1 + np.array(c)), 6) for c in
                __import__("itertools").combinations_with_replacement([0.10, -0.05, 0.02, -0.20, 0.08], 5)}
    assert set(first.paths["final_equity"].round(6)) <= products
    # the backtest's own order is one of the paths the chart shows against the bands
    assert first.actual.iloc[-1] == pytest.approx(result.equity.iloc[-1])
    assert list(first.bands.columns) == ["p5", "p25", "p50", "p75", "p95"] and len(first.bands) == 6


def test_when_every_trade_wins_no_path_has_a_drawdown():
    result = _result_of_trades([0.01, 0.03, 0.002, 0.05, 0.01] * 10)
    for method in ("trades", "bars"):
        mc = wb.monte_carlo(result, 200, method=method, seed=1)
        assert (mc.paths["max_drawdown"] == 0).all() and (mc.paths["time_under_water"] == 0).all()
        assert mc.probability_of_ruin() == 0 and (mc.paths["min_equity"] >= 1000).all()


def test_over_a_long_run_the_trade_bootstraps_median_final_equity_is_the_backtests():
    returns = np.random.default_rng(2).normal(0.004, 0.03, 2000).tolist()
    result = _result_of_trades(returns)
    mc = wb.monte_carlo(result, 1000, seed=3)
    assert mc.paths["final_equity"].median() == pytest.approx(result.equity.iloc[-1], rel=0.15)
    # while its order alone gave one drawdown of a wide range
    low, high = mc.quantiles((0.05, 0.95))["max_drawdown"]
    assert low < high


def test_the_bar_bootstrap_resamples_blocks_of_bar_returns():
    result = _result_of_trades(np.random.default_rng(8).normal(0.002, 0.05, 200).tolist(), gap=3)
    mc = wb.monte_carlo(result, 100, method="bars", block=5, seed=2)
    assert mc.block == 5 and mc.unit == "bars"
    assert mc.bands.index[0] < result.equity.index[0] and mc.bands.index[-1] == result.equity.index[-1]
    assert wb.monte_carlo(result, 10, method="bars").block == round(len(result.equity) ** (1 / 3))
    # a path's bar returns are the backtest's bar returns, so its final equity is a product of them
    bar_returns = result.equity.pct_change().fillna(0.0)
    assert (mc.paths["final_equity"] > 1000 * (1 + bar_returns.min()) ** len(bar_returns)).all()


def test_ruin_counts_the_paths_that_fell_to_the_floor():
    result = _result_of_trades([0.5, -0.6, 0.4, -0.5, 0.3])
    mc = wb.monte_carlo(result, 2000, seed=9)
    assert mc.probability_of_ruin(0.0) == 0
    assert 0 < mc.probability_of_ruin(0.5 * mc.init_cash) < mc.probability_of_ruin(0.9 * mc.init_cash) <= 1
    wiped = wb.monte_carlo(_result_of_trades([0.5, -1.2, 0.1]), 500, seed=1)  # a leveraged loss past everything
    assert wiped.probability_of_ruin() == pytest.approx((wiped.paths["min_equity"] <= 0).mean())
    assert wiped.probability_of_ruin() > 0 and (wiped.paths["final_equity"] >= 0).all()


def test_the_fan_chart_is_a_bokeh_figure():
    from bokeh.models import Plot

    mc = wb.monte_carlo(_result_of_trades([0.02, -0.01, 0.03] * 5), 50, seed=1)
    assert isinstance(mc.figure, Plot) and "Monte Carlo" in mc.figure.title.text
    assert isinstance(wb.monte_carlo(_result_of_trades([0.02, -0.01] * 5), 20, method="bars").figure, Plot)


def test_a_backtest_without_trades_gives_a_clear_error():
    with pytest.raises(ParameterError, match=r"^result: the channel backtest \{\} closed no trade") as caught:
        wb.monte_carlo(_result_of_trades([]))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kwargs, names", [
    ({"n": 0}, "n: 0"),
    ({"method": "paths"}, "method: 'paths'"),
    ({"block": 3}, "block: 3 is not allowed with method='trades'"),
    ({"method": "bars", "block": 0}, "block: 0"),
])
def test_monte_carlo_refuses_bad_arguments_in_one_line(kwargs, names):
    result = _result_of_trades([0.1, -0.05])
    with pytest.raises(ParameterError) as caught:
        wb.monte_carlo(result, **kwargs)
    assert names in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ParameterError, match="^floor: "):
        wb.monte_carlo(result, 10, seed=1).probability_of_ruin(floor=float("nan"))


# --- walk-forward ------------------------------------------------------------------------------------------------

GRID = {"entry_window": [24, 48, 96], "exit_window": [12, 24]}


def test_one_fold_is_a_sweep_of_the_training_window_and_a_backtest_of_the_test_window(candles):
    wf = wb.walk_forward("channel", candles, GRID, train=2000, test=1000, warmup=0)
    table = wb.sweep("channel", candles.iloc[:2000], GRID, progress=False)
    best = {name: int(table.iloc[0][name]) for name in GRID}
    result = wb.backtest("channel", candles.iloc[2000:3000], best)
    (_, fold), = wf.folds.iterrows()
    assert {name: fold[name] for name in GRID} == best
    assert (fold["train_start"], fold["train_end"]) == (candles.index[0], candles.index[1999])
    assert (fold["test_start"], fold["test_end"]) == (candles.index[2000], candles.index[2999])
    for metric in ("total_return", "cagr", "sharpe", "max_drawdown", "trades"):
        assert fold[f"is_{metric}"] == pytest.approx(table.iloc[0][metric], nan_ok=True)
        assert fold[f"oos_{metric}"] == pytest.approx(result.metrics[metric], nan_ok=True)
    pd.testing.assert_series_equal(wf.equity, result.equity.rename("equity"))
    assert wf.efficiency == pytest.approx(result.metrics["cagr"] / table.iloc[0]["cagr"])


def test_the_test_backtest_reads_warm_up_bars_but_counts_the_test_window_only(candles):
    wf = wb.walk_forward("channel", candles, GRID, train=2000, test=1000)
    (_, fold), = wf.folds.iterrows()
    warm = 3 * max(fold["entry_window"], fold["exit_window"])  # three spans of the longest channel
    assert fold["warmup"] == warm
    result = wf.results[0]
    assert result.equity.index[0] == candles.index[2000 - warm] and result.equity.index[-1] == candles.index[2999]
    start = result.equity.iloc[warm - 1]
    assert wf.equity.index[0] == candles.index[2000] and len(wf.equity) == 1000
    assert wf.equity.iloc[-1] == pytest.approx(10_000 * result.equity.iloc[-1] / start)
    assert fold["oos_total_return"] == pytest.approx(result.equity.iloc[-1] / start - 1)
    inside = result.trades[result.trades["entry_time"] >= candles.index[2000]]
    assert fold["oos_trades"] == len(inside)


def test_rolling_windows_keep_their_length_anchored_ones_grow_from_the_first_candle(candles):
    rolling = wb.walk_forward("channel", candles, GRID, train=1000, test=500, purge=10, warmup=0)
    anchored = wb.walk_forward("channel", candles, GRID, train=1000, test=500, purge=10, warmup=0, anchored=True)
    index = candles.index
    for wf in (rolling, anchored):
        assert len(wf.folds) == (3000 - 1000 - 10 - 500) // 500 + 1 == 3
        assert list(wf.folds["test_start"]) == [index[1010], index[1510], index[2010]]
        assert list(wf.folds["test_end"]) == [index[1509], index[2009], index[2509]]
        assert list(wf.folds["train_end"]) == [index[999], index[1499], index[1999]]  # purge: 10 bars apart
        assert len(wf.equity) == 1500 and wf.equity.index.is_monotonic_increasing
        growth = np.prod(1 + wf.folds["oos_total_return"].to_numpy())
        assert wf.equity.iloc[-1] == pytest.approx(10_000 * growth)
    assert list(rolling.folds["train_start"]) == [index[0], index[500], index[1000]]
    assert list(anchored.folds["train_start"]) == [index[0]] * 3
    from bokeh.models import Plot

    assert isinstance(rolling.figure, Plot) and "3 folds" in rolling.figure.title.text


@pytest.mark.parametrize("kwargs, names", [
    ({"train": 0, "test": 100}, "train: 0 is not allowed"),
    ({"train": 100.5, "test": 100}, "train: 100.5"),
    ({"train": 1000, "test": 5000}, "test: 5000 is not allowed"),
    ({"train": 2500, "test": 400, "purge": 200}, "train + purge + test: 2500 + 200 + 400 = 3100 bars"),
    ({"train": 1000, "test": 500, "step": 250}, "step: 250 is not allowed with test=500"),
    ({"train": 1000, "test": 500, "purge": -1}, "purge: -1"),
    ({"train": 1000, "test": 500, "objective": "luck"}, "objective: 'luck' is not a metric"),
    ({"train": 1000, "test": 500, "sort_by": "sharpe"}, "settings: sort_by and progress"),
])
def test_bad_windows_give_one_line_errors(candles, kwargs, names):
    with pytest.raises(ParameterError) as caught:
        wb.walk_forward("channel", candles, GRID, **kwargs)
    assert names in str(caught.value) and "\n" not in str(caught.value)
