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
