"""Is a Sharpe ratio skill or luck? The probabilistic and the deflated Sharpe ratio.

The probabilistic Sharpe ratio (PSR; Bailey and López de Prado, "The Sharpe Ratio Efficient
Frontier", Journal of Risk 15(2), 2012) is the probability that the true Sharpe ratio of
returns exceeds a benchmark, given how many returns there are and how skewed and fat-tailed
they are::

    PSR(SR*) = Φ( (SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR²) )

The deflated Sharpe ratio (DSR; Bailey and López de Prado, "The Deflated Sharpe Ratio:
Correcting for Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio
Management 40(5), 2014) is the PSR against the Sharpe ratio the best of ``trials`` worthless
strategies is expected to reach by luck alone::

    SR0 = sqrt(V) * ((1 - γ) * Φ⁻¹(1 - 1/N) + γ * Φ⁻¹(1 - 1/(N e)))

with ``V`` the variance of the trials' Sharpe ratios, ``N`` the number of independent trials
and ``γ`` the Euler–Mascheroni constant.

Both formulas take the **per-period** Sharpe ratio (mean over standard deviation of one
bar's return, not annualised) and the **non-excess** kurtosis (3 for normal returns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from statistics import NormalDist
from typing import TypeAlias, cast

import numpy as np
import pandas as pd

from workbench.backtest import BacktestResult
from workbench.errors import ParameterError
from workbench.research._returns import bar_returns, bars_per_year, risk_free_per_bar

EULER_MASCHERONI = 0.5772156649015329
_NORMAL = NormalDist()

ReturnsOrSharpe: TypeAlias = BacktestResult | pd.Series | np.ndarray | Sequence[float] | float


@dataclass(frozen=True)
class DeflatedSharpe:
    """What :func:`deflated_sharpe` found. Sharpe ratios are per period (one bar), as the
    formulas take them; the ``annualised_*`` properties scale them by ``sqrt(periods_per_year)``.

    Attributes:
        sharpe: the observed per-period Sharpe ratio.
        expected_max_sharpe: the per-period Sharpe ratio the best of ``trials`` strategies
            without skill is expected to show (``SR0``).
        probability: the deflated Sharpe ratio: the probability that the true Sharpe ratio
            exceeds ``expected_max_sharpe``, i.e. that the result is not luck of the search.
        trials: independent trials (parameter sets, strategies) the result was chosen from.
        n: returns the Sharpe ratio was measured on.
        skew: skewness of those returns (0 for normal returns).
        kurtosis: kurtosis of those returns, not excess (3 for normal returns).
        sharpe_std: standard deviation of the trials' per-period Sharpe ratios.
        periods_per_year: periods (bars) a year holds, or None when not known.
    """

    sharpe: float
    expected_max_sharpe: float
    probability: float
    trials: int
    n: int
    skew: float
    kurtosis: float
    sharpe_std: float
    periods_per_year: float | None = None

    @property
    def annualised_sharpe(self) -> float:
        """The observed Sharpe ratio annualised (NaN when ``periods_per_year`` is not known)."""
        return self.sharpe * self._scale

    @property
    def annualised_expected_max_sharpe(self) -> float:
        """``expected_max_sharpe`` annualised (NaN when ``periods_per_year`` is not known)."""
        return self.expected_max_sharpe * self._scale

    @property
    def _scale(self) -> float:
        return math.sqrt(self.periods_per_year) if self.periods_per_year else math.nan

    def passed(self, threshold: float = 0.95) -> bool:
        """True when the deflated Sharpe ratio reaches ``threshold`` (0.95: 95 % confidence
        that the Sharpe ratio beats the best that luck gives ``trials`` tries)."""
        _check_range("threshold", threshold, 0.0, 1.0)
        return self.probability >= threshold

    def __str__(self) -> str:
        verdict = "passes" if self.passed() else "does not pass"
        scale = "annualised " if self.periods_per_year else "per-period "
        shown = (
            (self.annualised_sharpe, self.annualised_expected_max_sharpe)
            if self.periods_per_year
            else (self.sharpe, self.expected_max_sharpe)
        )
        return (
            f"deflated Sharpe {self.probability:.3f} ({verdict} 0.95): {scale}Sharpe {shown[0]:.3f} against "
            f"{shown[1]:.3f} expected from the best of {self.trials} trials by luck; n={self.n}, "
            f"skew={self.skew:.3f}, kurtosis={self.kurtosis:.3f}"
        )


def probabilistic_sharpe(
    returns_or_sharpe: ReturnsOrSharpe,
    *,
    benchmark: float = 0.0,
    skew: float | None = None,
    kurtosis: float | None = None,
    n: int | None = None,
    periods_per_year: float | None = None,
) -> float:
    """The probability that the true Sharpe ratio exceeds ``benchmark`` (the PSR).

    A Sharpe ratio measured on few, skewed or fat-tailed returns is a noisy estimate; the PSR
    says how likely the real one is above a benchmark (0: does it make money at all?).

    Args:
        returns_or_sharpe: a :class:`BacktestResult` (its bar returns over the backtest's
            risk-free rate, as its ``sharpe`` metric), simple returns (a Series, an array; NaN
            dropped), or a Sharpe ratio with ``n`` (and best ``skew`` and ``kurtosis``) given.
        benchmark: the Sharpe ratio to beat, on the same scale as the Sharpe ratio (see
            ``periods_per_year``).
        skew: skewness of the returns; measured from returns when not given, else 0 (normal).
        kurtosis: kurtosis of the returns, **not** excess (normal = 3); measured from returns
            when not given, else 3.
        n: the number of returns, with a Sharpe ratio given as a number only.
        periods_per_year: when known, every Sharpe ratio passed in (a number, ``benchmark``)
            is **annualised** over that many periods and converted to per period here; unknown,
            they are per period. A :class:`BacktestResult` knows it (its market's bars a
            year, so ``benchmark`` compares with its ``sharpe`` metric).

    Returns:
        A probability from 0 to 1.

    Example:
        >>> import numpy as np, workbench as wb
        >>> returns = np.random.default_rng(1).normal(0.001, 0.01, 1000)   # daily
        >>> round(wb.probabilistic_sharpe(returns), 3)
        0.928
        >>> round(wb.probabilistic_sharpe(2.0, n=365, periods_per_year=365, benchmark=1.0), 3)
        0.84
    """
    moments = _moments(returns_or_sharpe, skew=skew, kurtosis=kurtosis, n=n, periods_per_year=periods_per_year)
    target = _finite("benchmark", benchmark) / moments.scale
    return _psr(moments.sharpe, target, moments)


def deflated_sharpe(
    returns_or_sharpe: ReturnsOrSharpe,
    *,
    trials: int | Sequence[float] | pd.Series,
    skew: float | None = None,
    kurtosis: float | None = None,
    n: int | None = None,
    sharpe_std: float | None = None,
    periods_per_year: float | None = None,
) -> DeflatedSharpe:
    """The deflated Sharpe ratio: the probability that the Sharpe ratio of the best of
    ``trials`` tries is more than the luck of trying.

    A sweep of 10,000 parameter sets finds a high Sharpe ratio even on noise. The DSR measures
    the chosen one against the Sharpe ratio the best of that many worthless trials is expected
    to show, given how much the trials' Sharpe ratios vary, and against the noise of a Sharpe
    ratio measured on ``n`` skewed, fat-tailed returns. Above 0.95 the result is unlikely to be
    luck; ``.passed()`` says so.

    Args:
        returns_or_sharpe: the chosen result: a :class:`BacktestResult`, its simple returns
            (Series or array; NaN dropped), or its Sharpe ratio with ``n`` given.
        trials: how many independent trials the result was chosen from (an int), or the Sharpe
            ratios of all of them (a sweep table's ``sharpe`` column): then their count is the
            number of trials and their standard deviation ``sharpe_std``. Correlated trials
            (neighbouring parameters) count for fewer independent ones.
        skew, kurtosis, n: as :func:`probabilistic_sharpe` (kurtosis not excess: normal = 3).
        sharpe_std: the standard deviation of the trials' Sharpe ratios, on the same scale as
            the Sharpe ratio. Default: what it is for trials without skill,
            ``1 / sqrt(n - 1)`` per period.
        periods_per_year: when known (given, or a :class:`BacktestResult`'s bars a year),
            the Sharpe ratios passed in (a number, ``trials``' values, ``sharpe_std``) are
            **annualised** and converted to per period, as the formulas need; unknown, they
            are per period.

    Returns:
        A frozen :class:`DeflatedSharpe`: ``probability`` (the DSR), the observed and the
        expected maximum Sharpe ratio (per period, and ``annualised_*``), trials, n, skew,
        kurtosis, and ``passed(threshold=0.95)``.

    Raises:
        ParameterError: a value outside its range (named in the message).

    Example:
        The 2014 paper's example: annualised Sharpe 2.5 over five years of daily returns
        (250 a year), skew -3, kurtosis 10, the best of 100 trials whose annualised Sharpe
        ratios have a variance of 0.5::

        >>> import workbench as wb
        >>> dsr = wb.deflated_sharpe(2.5, trials=100, sharpe_std=0.5 ** 0.5, n=1250, skew=-3,
        ...                          kurtosis=10, periods_per_year=250)
        >>> round(dsr.probability, 4), dsr.passed()
        (0.9004, False)

        On a sweep, with the chosen backtest::

        >>> table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 5)})  # doctest: +SKIP
        >>> best = wb.backtest("channel", candles, table.iloc[0][["entry_window"]].to_dict())  # doctest: +SKIP
        >>> wb.deflated_sharpe(best, trials=table["sharpe"]).passed()  # doctest: +SKIP
    """
    moments = _moments(returns_or_sharpe, skew=skew, kurtosis=kurtosis, n=n, periods_per_year=periods_per_year)
    count, spread = _trials(trials, moments.scale)
    if sharpe_std is not None:
        spread = _finite("sharpe_std", sharpe_std) / moments.scale
        if spread < 0:
            raise ParameterError(
                f"sharpe_std: {sharpe_std!r} is not allowed; expected a standard deviation >= 0",
                param="sharpe_std",
                value=sharpe_std,
            )
    if spread is None:  # trials without skill: the noise of a Sharpe ratio measured on n returns
        spread = 1.0 / math.sqrt(moments.n - 1)
    expected_max = spread * expected_max_z(count)
    return DeflatedSharpe(
        sharpe=moments.sharpe,
        expected_max_sharpe=expected_max,
        probability=_psr(moments.sharpe, expected_max, moments),
        trials=count,
        n=moments.n,
        skew=moments.skew,
        kurtosis=moments.kurtosis,
        sharpe_std=spread,
        periods_per_year=moments.periods_per_year,
    )


def expected_max_z(trials: int) -> float:
    """The expected maximum of ``trials`` independent standard normal draws (Bailey and López
    de Prado's approximation; 0 for one trial, which nothing was chosen from)."""
    if trials == 1:
        return 0.0
    return (1.0 - EULER_MASCHERONI) * _NORMAL.inv_cdf(1.0 - 1.0 / trials) + EULER_MASCHERONI * _NORMAL.inv_cdf(
        1.0 - 1.0 / (trials * math.e)
    )


@dataclass(frozen=True)
class _Moments:
    sharpe: float  # per period
    n: int
    skew: float
    kurtosis: float
    periods_per_year: float | None

    @property
    def scale(self) -> float:
        """Divide an annualised Sharpe ratio by this for a per-period one (1 when unknown)."""
        return math.sqrt(self.periods_per_year) if self.periods_per_year else 1.0


def _moments(
    source: ReturnsOrSharpe,
    *,
    skew: float | None,
    kurtosis: float | None,
    n: int | None,
    periods_per_year: float | None,
) -> _Moments:
    if periods_per_year is not None:
        _check_range("periods_per_year", periods_per_year, 1e-9, math.inf)
    if isinstance(source, Real) and not isinstance(source, bool):
        if n is None:
            raise ParameterError(
                "n: missing; a Sharpe ratio given as a number needs the number of returns it was measured on (n=...)",
                param="n",
                value=None,
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ParameterError(
                f"n: {n!r} is not allowed; expected a whole number of returns >= 2", param="n", value=n
            )
        scale = math.sqrt(periods_per_year) if periods_per_year else 1.0
        return _Moments(
            _finite("sharpe", source) / scale,
            int(n),
            0.0 if skew is None else _finite("skew", skew),
            3.0 if kurtosis is None else _kurtosis(kurtosis),
            periods_per_year,
        )
    if n is not None:
        raise ParameterError(
            f"n: {n!r} is not allowed with returns or a backtest, which are counted; give n with a "
            "Sharpe ratio number only",
            param="n",
            value=n,
        )
    excess = 0.0
    if isinstance(source, BacktestResult):
        returns = bar_returns(source)
        excess = risk_free_per_bar(source)
        periods_per_year = periods_per_year or bars_per_year(source)
    elif isinstance(source, (pd.Series, np.ndarray, list, tuple)):
        returns = np.asarray(source, dtype=np.float64).ravel()
        returns = returns[~np.isnan(returns)]
    else:
        raise ParameterError(
            f"returns_or_sharpe: a {type(source).__name__} is not allowed; expected a BacktestResult, "
            "returns (Series, array, list) or a Sharpe ratio number",
            param="returns_or_sharpe",
            value=source,
        )
    if not np.isfinite(returns).all():
        raise ParameterError(
            "returns: an infinite return is not allowed; expected finite simple returns", param="returns", value=source
        )
    if len(returns) < 3:
        raise ParameterError(
            f"returns: {len(returns)} returns are too few; expected at least 3", param="returns", value=len(returns)
        )
    centred = returns - returns.mean()
    std = returns.std(ddof=1)
    if not std > 0:
        raise ParameterError(
            "returns: all returns are equal, so they have no Sharpe ratio; expected returns that vary",
            param="returns",
            value=float(returns[0]),
        )
    moment2 = np.mean(centred**2)
    return _Moments(
        float((returns - excess).mean() / std),
        len(returns),
        float(np.mean(centred**3) / moment2**1.5) if skew is None else _finite("skew", skew),
        float(np.mean(centred**4) / moment2**2) if kurtosis is None else _kurtosis(kurtosis),
        periods_per_year,
    )


def _trials(trials: int | Sequence[float] | pd.Series, scale: float) -> tuple[int, float | None]:
    """The number of trials and, when their Sharpe ratios are given, their per-period spread."""
    if isinstance(trials, (int, np.integer)) and not isinstance(trials, bool):
        if trials < 1:
            raise ParameterError(
                f"trials: {trials!r} is not allowed; expected a whole number of trials >= 1",
                param="trials",
                value=trials,
            )
        return int(trials), None
    if isinstance(trials, (pd.Series, np.ndarray, list, tuple)):
        sharpes = np.asarray(trials, dtype=np.float64).ravel()
        sharpes = sharpes[np.isfinite(sharpes)]
        if len(sharpes) < 2:
            raise ParameterError(
                f"trials: {len(sharpes)} finite Sharpe ratios are too few; expected at least 2 (or "
                "the number of trials as an int)",
                param="trials",
                value=len(sharpes),
            )
        return len(sharpes), float(sharpes.std(ddof=1)) / scale
    raise ParameterError(
        f"trials: {trials!r} is not allowed; expected the number of trials (int >= 1) or their "
        "Sharpe ratios (a sequence)",
        param="trials",
        value=trials,
    )


def _psr(sharpe: float, benchmark: float, moments: _Moments) -> float:
    variance = 1.0 - moments.skew * sharpe + (moments.kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:
        raise ParameterError(
            f"skew {moments.skew:g} and kurtosis {moments.kurtosis:g} are not allowed with a "
            f"per-period Sharpe ratio of {sharpe:g}: they give the Sharpe ratio no positive "
            "variance (kurtosis is not excess: normal = 3)",
            param="kurtosis",
            value=moments.kurtosis,
        )
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(moments.n - 1) / math.sqrt(variance))


def _kurtosis(value: object) -> float:
    """A kurtosis given by hand: at least 1 for any distribution; not excess, so normal is 3."""
    kurtosis = _finite("kurtosis", value)
    if kurtosis < 1:
        raise ParameterError(
            f"kurtosis: {value!r} is not allowed; expected the kurtosis (not excess: normal = 3), which is at least 1",
            param="kurtosis",
            value=value,
        )
    return kurtosis


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ParameterError(f"{name}: {value!r} is not allowed; expected a finite number", param=name, value=value)
    return float(value)


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if _finite(name, value) < low or cast(float, value) > high:  # a finite number: _finite checked
        raise ParameterError(
            f"{name}: {value!r} is not allowed; expected a number from {low:g} to {high:g}", param=name, value=value
        )
