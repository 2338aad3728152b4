"""The research tools: is a backtest's edge more than the luck of the search?"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import store
from workbench.errors import ParameterError

NORMAL = NormalDist()


@pytest.fixture(scope="module", autouse=True)
def ledger(database):
    """Walk-forward, cross-validation and validation record each run in the tenant's trial ledger:
    the session's database (the notebook side is tenant 'local' unless a test switches)."""
    yield database


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

    result = wb.deflated_sharpe(
        2.5, trials=100, sharpe_std=math.sqrt(0.5), n=1250, skew=-3, kurtosis=10, periods_per_year=250
    )
    assert result.expected_max_sharpe == pytest.approx(0.1132, abs=5e-5)
    assert result.probability == pytest.approx(0.9004, abs=5e-5)
    assert result.sharpe == pytest.approx(2.5 / math.sqrt(250))
    assert result.annualised_sharpe == pytest.approx(2.5)
    assert result.annualised_expected_max_sharpe == pytest.approx(0.1132 * math.sqrt(250), abs=1e-3)
    assert (result.trials, result.n, result.skew, result.kurtosis) == (100, 1250, -3.0, 10.0)
    assert not result.passed() and result.passed(threshold=0.9)
    assert result.probability == pytest.approx(
        deflated_sharpe_ratio(
            est_sharpe=2.5 / math.sqrt(250),
            var_sharpe=0.5 / 250,
            nb_trials=100,
            backtest_horizon=1250,
            skew=-3,
            kurtosis=10,
        ),
        abs=1e-12,
    )


def test_on_iid_normal_returns_the_psr_against_zero_is_the_closed_form():
    returns = np.random.default_rng(7).normal(0.0005, 0.01, 2000)
    sharpe = returns.mean() / returns.std(ddof=1)
    closed_form = NORMAL.cdf(sharpe * math.sqrt(len(returns) - 1) / math.sqrt(1 + sharpe**2 / 2))
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


@pytest.mark.parametrize(
    "call, names",
    [
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
    ],
)
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
    from workbench.engine import core as engine

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
    return wb.BacktestResult(
        template=wb.get_template("channel"),
        params={},
        risk={},
        settings={"init_cash": init_cash, "risk_free": 0.0},
        candles=candles,
        metrics=metrics,
        equity=np.array(equity),
        position=np.zeros(len(equity)),
        fills=np.array(fills, dtype=np.float64).reshape(-1, 5),
        leverage=1.0,
    )


def test_the_trade_bootstrap_compounds_trade_returns_and_is_deterministic_with_a_seed():
    result = _result_of_trades([0.10, -0.05, 0.02, -0.20, 0.08])
    np.testing.assert_allclose(
        result.trades["pnl"] / np.array([1000, 1100, 1045, 1065.9, 852.72]), [0.10, -0.05, 0.02, -0.20, 0.08]
    )
    first, again = wb.monte_carlo(result, 300, seed=4), wb.monte_carlo(result, 300, seed=4)
    pd.testing.assert_frame_equal(first.paths, again.paths)
    assert not first.paths.equals(wb.monte_carlo(result, 300, seed=5).paths)
    assert list(first.paths.columns) == [
        "final_equity",
        "total_return",
        "max_drawdown",
        "time_under_water",
        "min_equity",
    ]
    assert len(first.paths) == 300 and first.unit == "trades" and first.block is None
    # every path is five of the trades' returns compounded: a product of five of them
    products = {
        round(1000 * np.prod(1 + np.array(c)), 6)
        for c in __import__("itertools").combinations_with_replacement([0.10, -0.05, 0.02, -0.20, 0.08], 5)
    }
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


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"n": 0}, "n: 0"),
        ({"method": "paths"}, "method: 'paths'"),
        ({"block": 3}, "block: 3 is not allowed with method='trades'"),
        ({"method": "bars", "block": 0}, "block: 0"),
    ],
)
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
    ((_, fold),) = wf.folds.iterrows()
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
    ((_, fold),) = wf.folds.iterrows()
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


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"train": 0, "test": 100}, "train: 0 is not allowed"),
        ({"train": 100.5, "test": 100}, "train: 100.5"),
        ({"train": 1000, "test": 5000}, "test: 5000 is not allowed"),
        ({"train": 2500, "test": 400, "purge": 200}, "train + purge + test: 2500 + 200 + 400 = 3100 bars"),
        ({"train": 1000, "test": 500, "step": 250}, "step: 250 is not allowed with test=500"),
        ({"train": 1000, "test": 500, "purge": -1}, "purge: -1"),
        ({"train": 1000, "test": 500, "objective": "luck"}, "objective: 'luck' is not a metric"),
        ({"train": 1000, "test": 500, "sort_by": "sharpe"}, "settings: sort_by and progress"),
    ],
)
def test_bad_windows_give_one_line_errors(candles, kwargs, names):
    with pytest.raises(ParameterError) as caught:
        wb.walk_forward("channel", candles, GRID, **kwargs)
    assert names in str(caught.value) and "\n" not in str(caught.value)


# --- combinatorial purged cross-validation and the probability of backtest overfitting ---------------------------

FREE = {"fees": 0.0, "slippage": 0.0}
LARGE_GRID = {
    "entry_window": list(range(5, 200, 5)),
    "exit_window": list(range(5, 100, 5)),
    "mode": ["breakout", "reversion"],
}  # 741 rows


def _walk(seed: int, momentum: float = 0.0, n: int = 3000) -> pd.DataFrame:
    """Hourly candles of a random walk without drift (its log returns demeaned); with ``momentum``, each return
    carries that share of the previous one (AR(1)): a persistent trend a breakout can follow."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    returns = lfilter([1.0], [1.0, -momentum], rng.normal(0.0, 0.01, n))
    close = 100.0 * np.exp(np.cumsum(returns - returns.mean()))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, 0.002, (2, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]),
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def test_on_random_walks_the_grids_best_looks_good_but_overfits():
    # no row has an edge: the best of 741 shows a fine in-sample Sharpe, which the deflated Sharpe ratio
    # does not believe, and CSCV finds its out-of-sample rank no better than a coin's (a skill-less grid's
    # PBO is about 0.5 in expectation; one walk can land well below, so four are averaged)
    found = []
    for seed in range(4):
        candles = _walk(seed)
        cv = wb.cross_validate("channel", candles, LARGE_GRID, n_groups=8, **FREE)
        table = wb.sweep("channel", candles, LARGE_GRID, progress=False, **FREE)
        best = wb.backtest(
            "channel",
            candles,
            {name: wb.research._walk_forward._plain(table.iloc[0][name]) for name in LARGE_GRID},
            **FREE,
        )
        assert table.iloc[0]["sharpe"] > 2.5
        assert not wb.deflated_sharpe(best, trials=table["sharpe"]).passed()
        assert len(cv.logits) == math.comb(8, 4) and cv.pbo > 0.4
        found.append(cv.pbo)
    assert np.mean(found) > 0.5


def test_a_planted_persistent_trend_gives_a_low_pbo():
    for seed in range(3):
        cv = wb.cross_validate("channel", _walk(seed, momentum=0.3), LARGE_GRID, n_groups=8, **FREE)
        assert cv.pbo < 0.25
        assert (cv.splits["mode"] == "breakout").all() and cv.paths["sharpe"].median() > 2


def test_purge_and_embargo_remove_exactly_the_training_bars_next_to_the_test_groups(candles):
    from workbench.research._returns import bar_returns

    grid = {"entry_window": [2, 3], "exit_window": [2, 4]}
    cv = wb.cross_validate("channel", candles.iloc[:40], grid, n_groups=4, k_test=2, purge=2, embargo=3)
    assert list(cv.groups["bars"]) == [10] * 4 and len(cv.splits) == 6 and len(cv.paths) == 3
    expected = {  # test groups (bars 0-9, 10-19, 20-29, 30-39) -> training bars
        (1, 2): [*range(23, 40)],
        (1, 3): [*range(13, 18), *range(33, 40)],
        (1, 4): [*range(13, 28)],
        (2, 3): [*range(0, 8), *range(33, 40)],
        (2, 4): [*range(0, 8), *range(23, 28)],
        (3, 4): [*range(0, 18)],
    }
    for split, row in cv.splits.iterrows():
        train, test = cv.indices(split)
        groups = np.array(row["test_groups"]) - 1
        assert list(train) == expected[row["test_groups"]]
        assert list(test) == [b for g in groups for b in range(10 * g, 10 * g + 10)]
        assert (row["train_bars"], row["test_bars"]) == (len(train), len(test))
        # the scores are the chosen row's Sharpe over exactly those bars of its backtest over all 40
        result = wb.backtest("channel", candles.iloc[:40], {name: int(row[name]) for name in grid})
        returns = bar_returns(result)
        for prefix, bars in (("is", train), ("oos", test)):
            picked = returns[bars]
            sharpe = picked.mean() / picked.std(ddof=1) * math.sqrt(8760) if picked.std() > 0 else math.nan
            assert row[f"{prefix}_sharpe"] == pytest.approx(sharpe, rel=1e-9, nan_ok=True)
    with pytest.raises(
        ParameterError,
        match=r"^purge \+ embargo: 9 \+ 9 bars leave the split testing groups "
        r"\(1, 3\) with 1 training bars",
    ):
        wb.cross_validate("channel", candles.iloc[:40], grid, n_groups=4, k_test=2, purge=9, embargo=9)


def test_each_path_trades_every_group_by_one_split_that_tested_it(candles):
    from workbench.research._returns import bar_returns

    grid = {"entry_window": [24, 48, 96], "exit_window": [12, 24]}
    cv = wb.cross_validate("channel", candles, grid, n_groups=6, k_test=2, objective="total_return")
    assert len(cv.splits) == math.comb(6, 2) and len(cv.paths) == math.comb(5, 1)
    returns = {
        (n, m): bar_returns(wb.backtest("channel", candles, {"entry_window": n, "exit_window": m}))
        for n in grid["entry_window"]
        for m in grid["exit_window"]
    }
    for split, row in cv.splits.iterrows():  # the choice is the best total return over the training bars
        train, _ = cv.indices(split)
        growth = {combo: np.prod(1 + r[train]) for combo, r in returns.items()}
        assert max(growth, key=growth.get) == (row["entry_window"], row["exit_window"])
    testing = {g: [s for s, row in cv.splits.iterrows() if g in row["test_groups"]] for g in range(1, 7)}
    for path, row in cv.paths.iterrows():
        parts = [
            returns[tuple(cv.splits.loc[testing[g][path - 1], ["entry_window", "exit_window"]])][
                500 * (g - 1) : 500 * g
            ]
            for g in range(1, 7)
        ]
        joined = np.concatenate(parts)
        assert row["sharpe"] == pytest.approx(joined.mean() / joined.std(ddof=1) * math.sqrt(8760), rel=1e-9)
        assert row["total_return"] == pytest.approx(np.prod(1 + joined) - 1, rel=1e-9)
    from bokeh.models import LayoutDOM

    assert isinstance(cv.figure, LayoutDOM) and "PBO" in cv.figure.children[0].title.text


@pytest.mark.parametrize(
    "template, grid",
    [
        ("ema_reversal", {"ema_window": [20, 50], "leverage": [1, 3]}),
        ("market_making", {"spread": [0.2, 0.5], "ema_window": [10, 40]}),
        (
            "rules",
            {
                "rules": "vars fast = 10, slow = 40\nbuy 50% when EMA($fast) > SMA($slow)\n"
                "exit long when EMA($fast) < SMA($slow)\n",
                "fast": [5, 10, 20],
                "slow": [30, 60],
            },
        ),
    ],
)
def test_every_template_and_rule_variables_cross_validate_as_their_backtests(candles, template, grid):
    from workbench.research._returns import bar_returns

    cv = wb.cross_validate(template, candles, grid, n_groups=4, k_test=1, embargo=24)
    axes = [name for name in grid if name != "rules"]
    for split, row in cv.splits.iterrows():
        train, test = cv.indices(split)
        params = {**({"rules": grid["rules"]} if "rules" in grid else {}), **{name: row[name] for name in axes}}
        returns = bar_returns(wb.backtest(template, candles, params))
        for prefix, bars in (("is", train), ("oos", test)):
            assert row[f"{prefix}_total_return"] == pytest.approx(np.prod(1 + returns[bars]) - 1, rel=1e-9, abs=1e-12)


def test_cscv_on_a_hand_made_matrix_gives_the_pbo_worked_out_by_hand():
    # four rows, four groups of two bars: a row returns r in the first bar of a group and 0 in the second.
    # Each of the C(4, 2) = 6 halves: the best total return in it, its rank among the 4 in the other half
    # (1 the worst), λ = ln(rank / (5 - rank)):
    #   in {1,2}: A (1.08*1.06) best; in {3,4} A is the worst (0.9408)      rank 1 -> ln(1/4)
    #   in {1,3}: A (1.0584);      in {2,4} B 1.0404, D 1.0506 above A 1.0176 -> rank 2 -> ln(2/3)
    #   in {1,4}: D (1.0506);      in {2,3} B 1.0608 above D, A and C below  -> rank 3 -> ln(3/2)
    #   in {2,3}: B (1.0608);      in {1,4} A 1.0368, D 1.0506 above B 0.9996 -> rank 2 -> ln(2/3)
    #   in {2,4}: D (1.0506);      in {1,3} A 1.0584 above D, B and C below  -> rank 3 -> ln(3/2)
    #   in {3,4}: B (1.0608);      in {1,2} A 1.1448, D 1.0506 above B 0.9996 -> rank 2 -> ln(2/3)
    # so 4 of the 6 logits are <= 0: PBO = 2/3.
    from workbench.research._cross_validate import _cscv, _stretch_sums, _Sums

    per_group = np.array(
        [
            [0.08, 0.06, -0.02, -0.04],  # A
            [-0.02, 0.02, 0.04, 0.02],  # B
            [0.01, -0.02, 0.03, -0.05],  # C
            [0.025, 0.025, 0.025, 0.025],
        ]
    )  # D
    returns = np.zeros((4, 8))
    returns[:, ::2] = per_group
    sums = np.zeros((5, 4, 4))
    for row, equity in enumerate(np.cumprod(1 + returns, axis=1)):
        _stretch_sums(equity, 1.0, np.array([0, 2, 4, 6]), 0.0, sums[:, row])
    np.testing.assert_allclose(sums[1], per_group, rtol=1e-12)  # the sum of each group's returns
    logits = _cscv(_Sums(*sums), "total_return", 0.0, 1.0)
    expected = np.log([1 / 4, 2 / 3, 3 / 2, 2 / 3, 3 / 2, 2 / 3])
    np.testing.assert_allclose(logits.to_numpy(), expected, rtol=1e-12)
    assert float((logits <= 0).mean()) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"n_groups": 5}, "n_groups: 5 is not allowed; expected an even number"),
        ({"n_groups": 22}, "n_groups: 22"),
        ({"n_groups": 4, "k_test": 4}, "k_test: 4 is not allowed; expected a whole number from 1 to 3"),
        ({"purge": -1}, "purge: -1"),
        ({"embargo": 1.5}, "embargo: 1.5"),
        ({"objective": "max_drawdown"}, "objective: 'max_drawdown' is not allowed"),
        (
            {"sort_by": "sharpe", "progress": False},
            "settings: progress, sort_by not allowed; expected any of risk, fees",
        ),
        ({"grid": {"entry_window": 48}}, "grid: 1 combination is not allowed"),
    ],
)
def test_cross_validate_refuses_bad_arguments_in_one_line(candles, kwargs, names):
    grid = kwargs.pop("grid", GRID)
    with pytest.raises(ParameterError) as caught:
        wb.cross_validate("channel", candles, grid, **kwargs)
    assert names in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ParameterError, match="^split: 99"):
        wb.cross_validate("channel", candles.iloc[:200], GRID, n_groups=4).indices(99)


# --- look-ahead ----------------------------------------------------------------------------------------------------

RULES = (
    "vars fast = 12\n"
    "buy 50% when EMA($fast) crosses_above SMA(30) and RSI(14) < 70\n"
    "    stop_loss 2% take_profit 1%, 3% trailing_stop 4%\n"
    "exit long when close < BB(20, 2).lower\n"
    "sell 30% when MACD(12, 26, 9).hist < 0 and close < DONCHIAN(20).low\n"
    "exit short when ATR(14) > 200\n"
)


@pytest.mark.parametrize(
    "strategy, params",
    [("channel", {"direction": "both"}), ("ema_reversal", {}), ("market_making", {}), (RULES, {"fast": 8})],
)
def test_no_built_in_template_looks_ahead(candles, strategy, params):
    found = wb.check_lookahead(strategy, candles, params, cuts=20, seed=3)
    assert found.passed and found.bar is None and len(found.cuts) == 20, str(found)
    assert "no look-ahead" in str(found)


def test_a_strategy_that_peeks_at_the_next_bars_is_caught(candles, monkeypatch):
    # the rule language has no way to name a future bar, so the peek is planted in an indicator: an SMA
    # centred on its bar (half its window in the future), as a careless pandas rolling(center=True) would be
    from workbench.engine import indicators as _indicators

    rules = "buy 100% when close < SMA(20)\nexit long when close > SMA(20)\n"
    assert wb.check_lookahead(rules, candles).passed
    monkeypatch.setitem(
        _indicators.INDICATORS,
        "sma",
        lambda arrays, window: pd.Series(arrays["close"]).rolling(window, center=True).mean().to_numpy(),
    )
    found = wb.check_lookahead(rules, candles)
    assert not found.passed and found.cut in found.cuts
    bar = candles.index.get_loc(found.bar)
    assert found.cut - 20 <= bar < found.cut  # within a window of the cut, where the cut run lacked the future
    assert "look-ahead at" in str(found) and "\n" not in str(found) and "with all 3000 bars" in found.difference
    # the same peek decides the same as the honest SMA nowhere near the end: only cutting shows it
    assert not wb.check_lookahead(rules, candles, cuts=[found.cut]).passed


def test_check_lookahead_refuses_bad_cuts_in_one_line(candles):
    for cuts, names in (
        (0, "cuts: 0 is not allowed"),
        ([1], "cuts: 1 is not allowed"),
        ([10, 3000], "cuts: 3000"),
        ("5", "cuts: '5'"),
    ):
        with pytest.raises(ParameterError) as caught:
            wb.check_lookahead("channel", candles, cuts=cuts)
        assert names in str(caught.value) and "\n" not in str(caught.value)


# --- the validation battery and the trial ledger -------------------------------------------------------------------

VGRID = {
    "entry_window": list(range(5, 100, 10)),
    "exit_window": [5, 10, 20, 40],
    "mode": ["breakout", "reversion"],
}  # 80 rows


@pytest.fixture
def tenant(monkeypatch) -> str:
    """A fresh tenant of its own, with an empty trial ledger, that the test's notebook side acts as."""
    import secrets

    name = f"t{secrets.token_hex(5)}"
    store.create_tenant(name)
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(name))
    return name


def _calm(candles: pd.DataFrame, scale: float) -> pd.DataFrame:
    """The same walk with its log returns scaled by ``scale``: annual returns of a size whose CAGR ratios (the
    walk-forward efficiency) are not blown up by compounding a few months to a year."""
    out = candles.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = 100.0 * (candles[column] / 100.0) ** scale
    return out


def _sha256(candles: pd.DataFrame) -> str:
    import hashlib

    values = candles[["open", "high", "low", "close", "volume"]].to_numpy(dtype="<f8")
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def test_on_a_random_walk_the_battery_fails_on_pbo_or_the_deflated_sharpe(tenant):
    from bokeh.models import LayoutDOM

    candles = _walk(0)
    report = wb.validate("channel", candles, VGRID, **FREE)
    assert report.result.metrics["sharpe"] > 2.5  # the grid's best looks good
    assert not report.passed and {"pbo", "deflated_sharpe"} & set(report.failed)
    checks = report.checks
    assert list(checks.columns) == ["name", "value", "threshold", "passed"]
    assert list(checks["name"]) == [
        "walk_forward_efficiency",
        "oos_total_return",
        "pbo",
        "deflated_sharpe",
        "lookahead",
        "probability_of_ruin",
        "max_drawdown_p50",
        "max_drawdown_p95",
    ]
    assert checks.loc["pbo", "value"] == report.cross_validation.pbo
    assert checks.loc["deflated_sharpe", "value"] == report.deflated_sharpe.probability
    assert report.deflated_sharpe.trials == report.trials == 80
    assert checks.loc["lookahead", "passed"] is True and checks.loc["probability_of_ruin", "passed"] is None
    assert isinstance(report.figure, LayoutDOM) and len(report.figure.children) == 3
    page = report.html()
    assert page.startswith("<!DOCTYPE html>") and "deflated_sharpe" in page and "Bokeh" in page
    assert "failed" in report._repr_html_() and "failed" in repr(report)


def test_a_planted_persistent_edge_passes_the_battery(tenant):
    report = wb.validate("channel", _calm(_walk(0, momentum=0.3, n=4000), 0.2), VGRID, **FREE)
    assert report.passed and report.failed == [], report.checks
    assert report.params["mode"] == "breakout" and report.certificate["passed"] is True


def test_the_ledger_accumulates_over_runs_and_recorded_sweeps_and_deflates_by_all_of_them(tenant):
    candles, other = _walk(3, n=1500), _walk(4, n=1500)
    assert wb.trials().empty and wb.trial_count("channel", candles) == 0
    wb.walk_forward("channel", candles, GRID, train=600, test=300, **FREE)
    wb.cross_validate("channel", candles, GRID, n_groups=4, **FREE)
    table = wb.sweep("channel", candles, {"entry_window": list(range(5, 100, 5))}, progress=False)
    assert wb.record_trials("channel", candles, len(table)) == 6 + 6 + 19
    wb.walk_forward("channel", other, GRID, train=600, test=300, **FREE)  # another data set
    assert wb.trial_count("channel", candles) == 31 and wb.trial_count("channel", _sha256(other)) == 6
    ledger = wb.trials("channel", candles)
    assert list(ledger["what"]) == ["walk_forward", "cross_validate", "sweep"]
    assert list(ledger["cumulative"]) == [6, 12, 31] and (ledger["data_hash"] == _sha256(candles)).all()
    assert (ledger["data_start"] == candles.index[0]).all() and (ledger["data_end"] == candles.index[-1]).all()
    assert (ledger["bars"] == 1500).all() and len(wb.trials()) == 4

    first = wb.validate("channel", candles, GRID, folds=2, n_groups=4, **FREE)
    second = wb.validate("channel", candles, GRID, folds=2, n_groups=4, **FREE)
    assert (first.trials, second.trials) == (37, 43)  # the validations' own walk-forward and CPCV are not counted
    assert first.certificate["trials"] == {"this_run": 6, "cumulative": 37}
    assert second.deflated_sharpe.trials == 43
    assert second.deflated_sharpe.probability <= first.deflated_sharpe.probability
    assert second.deflated_sharpe.expected_max_sharpe > first.deflated_sharpe.expected_max_sharpe
    assert list(wb.trials("channel", candles)["what"])[-2:] == ["validate", "validate"]


def test_a_rule_strategy_is_one_family_whatever_its_variables_values(tenant):
    candles = _walk(5, n=1000)
    rules = "vars fast = 10, slow = 40\nbuy 50% when EMA($fast) > SMA($slow)\nexit long when EMA($fast) < SMA($slow)\n"
    wb.record_trials(rules, candles, 12)
    wb.record_trials("rules", candles, 4, grid={"rules": rules.replace("10", "7"), "slow": [30, 60]})
    assert wb.trial_count(rules, candles) == 16 and wb.trial_count("channel", candles) == 0
    (family,) = set(wb.trials()["family"])
    assert family.startswith("rules:\nvars fast, slow\nbuy 50% when EMA($fast)") and "= 10" not in family
    with pytest.raises(ParameterError, match="^n: 0 is not allowed"):
        wb.record_trials("channel", candles, 0)
    with pytest.raises(ParameterError, match=r"^grid: the rules template needs its rule strategy"):
        wb.record_trials("rules", candles, 3)


def test_the_ledger_is_per_tenant_and_append_only(database, monkeypatch):
    import secrets

    from sqlalchemy import delete, text, update

    alice, bob = f"a{secrets.token_hex(5)}", f"b{secrets.token_hex(5)}"
    for name in (alice, bob):
        store.create_tenant(name)
    candles = _walk(6, n=1000)
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(alice))
    assert wb.record_trials("channel", candles, 50) == 50
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(bob))
    assert wb.trials().empty and wb.trial_count("channel", candles) == 0  # alice's rows are not bob's
    assert wb.record_trials("channel", candles, 5) == 5
    with store.session() as scope:  # not even by asking the table directly
        assert scope.execute(text("SELECT sum(combinations) FROM trials")).scalar() == 5
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(alice))
    for statement in (update(store.Trial).values(combinations=1), delete(store.Trial), text("TRUNCATE trials")):
        with pytest.raises(Exception, match="permission denied|append-only"), store.session() as scope:
            scope.execute(statement)
    for statement in (update(store.Trial).values(combinations=1), delete(store.Trial), text("TRUNCATE trials")):
        with pytest.raises(Exception, match="trials is append-only"), store.owner_session() as scope:
            scope.execute(statement)  # the owner neither: the triggers refuse
    assert wb.trial_count("channel", candles) == 50 and len(wb.trials()) == 1


def test_the_certificate_is_json_and_names_the_data_the_code_and_every_statistic(tenant):
    import json
    import subprocess
    from pathlib import Path

    candles = _walk(7, n=1500)
    report = wb.validate("channel", candles, GRID, folds=2, n_groups=4, **FREE)
    certificate = report.certificate
    assert json.loads(json.dumps(certificate, allow_nan=False)) == certificate
    assert certificate["data"] == {
        "sha256": _sha256(candles),
        "start": "2024-01-01T00:00:00+00:00",
        "end": candles.index[-1].isoformat(),
        "bars": 1500,
    }
    assert certificate["strategy"]["template"] == "channel" and certificate["strategy"]["params"] == report.params
    assert certificate["strategy"]["grid"] == GRID
    assert certificate["workbench_version"] == wb.__version__
    root = Path(wb.__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert certificate["code_version"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert pd.Timestamp(certificate["created_at"]).tzname() == "UTC"
    statistics = certificate["statistics"]
    assert statistics["pbo"] == report.cross_validation.pbo
    assert statistics["deflated_sharpe"] == report.deflated_sharpe.probability
    assert statistics["walk_forward_efficiency"] == pytest.approx(report.walk_forward.efficiency)
    assert certificate["thresholds"]["pbo"] == {"value": 0.5, "passes_when": "<"}
    assert certificate["thresholds"]["deflated_sharpe"]["value"] == 0.95
    assert [c["name"] for c in certificate["checks"]] == list(report.checks["name"])
    assert certificate["trials"]["cumulative"] == report.trials == 6


def test_thresholds_override_by_name_and_unknown_ones_are_refused(tenant):
    candles = _walk(8, n=1500)
    lenient = {
        "pbo": 1.01,
        "deflated_sharpe": 0.0,
        "oos_total_return": -1.0,
        "walk_forward_efficiency": -1e9,
        "probability_of_ruin": 0.9,
    }
    report = wb.validate("channel", candles, GRID, folds=2, n_groups=4, thresholds=lenient, **FREE)
    assert report.passed, report.checks
    assert report.checks.loc["pbo", "threshold"] == 1.01 and report.checks.loc["probability_of_ruin", "passed"]
    strict = wb.validate(
        "channel", candles, GRID, folds=2, n_groups=4, thresholds={"deflated_sharpe": 1.0, "lookahead": None}, **FREE
    )
    assert "deflated_sharpe" in strict.failed and strict.checks.loc["lookahead", "passed"] is None
    for thresholds, names in (
        ({"luck": 0.5}, "thresholds: luck not a check; expected any of walk_forward_efficiency"),
        ({"pbo": "low"}, "thresholds: pbo='low' is not allowed"),
        ({"pbo": float("nan")}, "thresholds: pbo=nan"),
        ([0.5], "thresholds: a list is not allowed"),
    ):
        with pytest.raises(ParameterError) as caught:
            wb.validate("channel", candles, GRID, thresholds=thresholds)
        assert str(caught.value).startswith(names) and "\n" not in str(caught.value)
    assert wb.trial_count("channel", candles) == 12  # a refused call tried nothing


def test_the_cli_prints_one_json_document_and_a_bad_grid_is_one_line(tenant, tmp_path, capsys):
    import json

    from workbench.cli import main

    path = tmp_path / "walk.csv"
    _walk(9, n=1500).to_csv(path)
    grid = json.dumps(GRID)
    assert (
        main(
            [
                "validate",
                "channel",
                "--candles",
                str(path),
                "--grid",
                grid,
                "--folds",
                "2",
                "--groups",
                "4",
                "--fees",
                "0",
                "--json",
            ]
        )
        == 0
    )
    certificate = json.loads(capsys.readouterr().out)  # one document
    assert certificate["data"]["bars"] == 1500 and certificate["data"]["sha256"] == _sha256(wb.read_candles(path))
    assert certificate["trials"]["cumulative"] == 6 and isinstance(certificate["passed"], bool)
    assert main(["walk-forward", "channel", "--candles", str(path), "--grid", grid, "--folds", "3", "--json"]) == 0
    walked = json.loads(capsys.readouterr().out)
    assert len(walked["folds"]) == 3 and {"entry_window", "oos_sharpe", "test_start"} <= set(walked["folds"][0])
    assert wb.trial_count("channel", wb.read_candles(path)) == 12
    for command in ("validate", "walk-forward"):
        for bad, names in (
            ("[24, 48]", "--grid: expected a JSON object"),
            ('{"entry', "--grid: invalid JSON"),
            ('{"entry_window": [0, 5]}', "entry_window"),
        ):
            assert main([command, "channel", "--candles", str(path), "--grid", bad]) == 2
            captured = capsys.readouterr()
            assert captured.out == "" and captured.err.count("\n") == 1
            assert captured.err.startswith(f"workbench {command}: error: ") and names in captured.err


def test_a_ledger_that_cannot_be_written_fails_the_research_call_in_one_line(monkeypatch):
    from workbench.errors import DatabaseError

    monkeypatch.setenv(store.TENANT_URL_ENV, "postgresql://nobody:secret@127.0.0.1:1/nowhere")  # nothing listens
    candles = _walk(10, n=600)
    for call in (
        lambda: wb.record_trials("channel", candles, 3),
        lambda: wb.walk_forward("channel", candles, GRID, train=300, test=150, **FREE),
        lambda: wb.cross_validate("channel", candles, GRID, n_groups=4, **FREE),
    ):
        with pytest.raises(
            DatabaseError,
            match=r"^trial ledger: could not record \d+ \w+ trials of channel: "
            r"OperationalError: connection failed",
        ) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_parameters_that_never_trade_fail_the_deflated_sharpe_and_show_no_monte_carlo(tenant):
    candles = _walk(11, n=1500)
    report = wb.validate(
        "channel", candles, GRID, params={"entry_window": 1400, "exit_window": 700}, folds=2, n_groups=4, **FREE
    )
    assert report.result.metrics["trades"] == 0 and report.params["entry_window"] == 1400
    assert report.deflated_sharpe is None and report.monte_carlo is None
    assert "deflated_sharpe" in report.failed and math.isnan(report.checks.loc["probability_of_ruin", "value"])
    assert len(report.figure.children) == 2 and report.certificate["statistics"]["deflated_sharpe"] is None
