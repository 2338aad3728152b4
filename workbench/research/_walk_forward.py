"""Walk-forward analysis: choose parameters on the past, trade them on the future, repeat.

A sweep's best row is chosen on the very candles it is measured on. Walking forward measures
the choice instead: on each fold the grid is swept over a training window, the best
parameter set by the objective is backtested on the test window that follows, and the test
windows' equity is stitched into one out-of-sample curve that no choice has seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest import BacktestResult, backtest, sweep
from workbench.engine.core import METRIC_NAMES
from workbench.errors import ParameterError
from workbench.research._returns import bar_returns, bars_per_year, risk_free_per_bar
from workbench.research._trials import record_run
from workbench.strategies import Template, get_template, kernel_for

_METRICS = ("total_return", "cagr", "sharpe", "max_drawdown", "trades")
_WARMUP_SPANS = 3  # as live trading warms indicators up: an EMA seeded three spans back has forgotten its seed
_YEAR = pd.Timedelta(days=365)


class WalkForward:
    """What :func:`walk_forward` returns.

    Attributes:
        folds: one row per fold: the training and test windows (``train_start``,
            ``train_end``, ``test_start``, ``test_end``, bar open times, ends included), the
            chosen parameters (the grid's columns), the in-sample metrics of the choice
            (``is_*``, the sweep's row) and its out-of-sample metrics (``oos_*``, counted in
            the test window only).
        equity: the test windows' equity stitched into one out-of-sample curve, each window
            compounding from where the previous one ended, starting at ``init_cash``.
        results: each fold's out-of-sample :class:`BacktestResult` (with its warm-up bars).
        objective: the metric the parameters were chosen by.
        init_cash: the equity the stitched curve starts from.
    """

    def __init__(
        self, *, folds: pd.DataFrame, equity: pd.Series, results: list[BacktestResult], objective: str, init_cash: float
    ):
        self.folds = folds
        self.init_cash = init_cash
        self.equity = equity
        self.results = results
        self.objective = objective

    @property
    def efficiency(self) -> float:
        """Walk-forward efficiency: the out-of-sample annualised return (CAGR of :attr:`equity`)
        over the mean in-sample one. Near 1 the choice kept its edge; near 0 or below it was fit
        to the training windows. NaN when the in-sample return is 0."""
        in_sample = self.folds["is_cagr"].mean()
        return _cagr(self.equity, self.init_cash) / in_sample if in_sample else math.nan

    @cached_property
    def figure(self):
        """A bokeh chart: the stitched out-of-sample equity, the test windows shaded."""
        from bokeh.models import BoxAnnotation, NumeralTickFormatter
        from bokeh.plotting import figure

        naive = self.equity.index.tz_convert(None)
        chart = figure(
            height=350,
            width=900,
            x_axis_type="datetime",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            title=f"Walk-forward: {len(self.folds)} folds chosen by {self.objective}, out-of-sample "
            f"equity (efficiency {self.efficiency:.2f})",
        )
        chart.line(naive, self.equity.to_numpy(), color="#1f77b4", line_width=2, legend_label="out of sample")
        for i, fold in enumerate(self.folds.itertuples()):
            chart.add_layout(
                BoxAnnotation(
                    left=fold.test_start.tz_convert(None),
                    right=fold.test_end.tz_convert(None),
                    fill_alpha=0.06 if i % 2 else 0.12,
                    fill_color="#2ca02c",
                )
            )
        chart.yaxis.formatter = NumeralTickFormatter(format="0,0")
        chart.yaxis.axis_label = "equity"
        chart.legend.location = "top_left"
        return chart

    def __repr__(self) -> str:
        return (
            f"<WalkForward {len(self.folds)} folds by {self.objective}: out-of-sample total_return="
            f"{self.equity.iloc[-1] / self.init_cash - 1:.4f} efficiency={self.efficiency:.3f}>"
        )


def walk_forward(
    template: str | Template,
    candles: pd.DataFrame,
    grid: Mapping[str, Any],
    *,
    train: int,
    test: int,
    step: int | None = None,
    anchored: bool = False,
    objective: str = "sharpe",
    purge: int = 0,
    warmup: int | None = None,
    **settings: Any,
) -> WalkForward:
    """Walk a parameter choice forward: sweep a training window, trade its best on the next.

    Args:
        template, candles, grid: as :func:`workbench.sweep`.
        train: bars in each training window (with ``anchored``, in the first one).
        test: bars in each test window.
        step: bars the windows move by from one fold to the next; default ``test``, so the
            test windows tile the candles. Less than ``test`` would overlap them.
        anchored: every training window starts at the first candle and grows by ``step``
            (expanding); default False rolls a window of ``train`` bars.
        objective: the metric the best parameter set is chosen by (``sweep``'s ``sort_by``:
            highest first, lowest for ``max_drawdown``).
        purge: bars left out between each training window and its test window, so that no
            training bar sits right against the bars it is tested on.
        warmup: bars before each test window the test backtest reads so that its indicators
            start warm; nothing in them counts: the out-of-sample metrics and trades are the
            test window's only (a position the warm-up opened is held into it, as a strategy
            running since then would hold it). Default: three times the chosen parameters'
            longest indicator window, as live trading warms up; 0 backtests the test window
            alone.
        settings: passed to both ``sweep`` and ``backtest`` (fees, slippage, init_cash, risk...).

    Returns:
        A :class:`WalkForward`: ``.folds`` (windows, chosen parameters, in- and out-of-sample
        metrics), ``.equity`` (stitched out-of-sample), ``.efficiency`` and ``.figure``.

    Raises:
        ParameterError: window sizes that do not fit the candles, or a bad argument.
        DatabaseError: the run could not be recorded in the tenant's trial ledger
            (:func:`workbench.trials`: one row, the grid's combinations).

    Example:
        >>> wf = wb.walk_forward("channel", candles, {"entry_window": range(20, 200, 20)},
        ...                      train=24 * 180, test=24 * 30)                     # doctest: +SKIP
        >>> wf.folds[["test_start", "entry_window", "is_sharpe", "oos_sharpe"]]    # doctest: +SKIP
        >>> wf.efficiency, wf.figure                                              # doctest: +SKIP
    """
    tpl = template if isinstance(template, Template) else get_template(template)
    total = len(candles)
    train, test = _bars("train", train, 2, total), _bars("test", test, 2, total)
    step = test if step is None else _bars("step", step, 1, total)
    if step < test:
        raise ParameterError(
            f"step: {step} is not allowed with test={test}; expected at least the test window, "
            "or the test windows would overlap",
            param="step",
            value=step,
        )
    purge = _bars("purge", purge, 0, total)
    if warmup is not None:
        warmup = _bars("warmup", warmup, 0, total)
    if train + purge + test > total:
        raise ParameterError(
            f"train + purge + test: {train} + {purge} + {test} = {train + purge + test} bars is "
            f"more than the candles' {total}; expected windows that fit",
            param="train",
            value=train,
        )
    if objective not in METRIC_NAMES:
        raise ParameterError(
            f"objective: {objective!r} is not a metric; choose one of {', '.join(METRIC_NAMES)}",
            param="objective",
            value=objective,
        )
    if "sort_by" in settings or "progress" in settings:
        raise ParameterError(
            "settings: sort_by and progress are walk_forward's own (objective=...)",
            param="settings",
            value=sorted(settings),
        )
    rows, results, curves = [], [], []
    test_start = train + purge
    while test_start + test <= total:
        train_start = 0 if anchored else test_start - purge - train
        training = candles.iloc[train_start : test_start - purge]
        table = sweep(tpl, training, grid, sort_by=objective, progress=False, **settings)
        best = table.iloc[0]
        params = {name: _plain(best[name]) for name in grid}
        chosen = tpl.validate(params)
        lead = _warmup(tpl, chosen) if warmup is None else warmup
        first = max(0, test_start - lead)
        result = backtest(tpl, candles.iloc[first : test_start + test], params, **settings)
        metrics, curve = _window_metrics(result, test_start - first)
        window = candles.index
        rows.append(
            {
                "train_start": window[train_start],
                "train_end": window[test_start - purge - 1],
                "test_start": window[test_start],
                "test_end": window[test_start + test - 1],
                **params,
                **{f"is_{m}": best[m] for m in _METRICS},
                **{f"oos_{m}": metrics[m] for m in _METRICS},
                "warmup": test_start - first,
            }
        )
        results.append(result)
        curves.append(curve)
        test_start += step
    folds = pd.DataFrame(rows)
    folds.index = pd.RangeIndex(1, len(folds) + 1, name="fold")
    init_cash = float(results[0].settings["init_cash"])
    record_run(tpl, candles, len(table), "walk_forward", grid)  # the tenant's trial ledger
    return WalkForward(
        folds=folds, equity=_stitch(curves, init_cash), results=results, objective=objective, init_cash=init_cash
    )


def _window_metrics(result: BacktestResult, start: int) -> tuple[dict[str, float], pd.Series]:
    """The metrics of ``docs/METRICS.md`` over the bars from ``start`` on, and their growth of 1."""
    if start == 0:
        growth = result.equity / result.settings["init_cash"]
        return {m: result.metrics[m] for m in _METRICS}, growth
    returns = bar_returns(result)[start:]
    equity = result.equity.iloc[start:]
    growth = equity / result.equity.iloc[start - 1]
    peak = np.maximum.accumulate(np.maximum(growth.to_numpy(), 1.0))
    std = returns.std(ddof=1)
    excess = returns - risk_free_per_bar(result)
    trades = result.trades
    closed_inside = (trades["entry_time"] >= equity.index[0]).sum()
    return {
        "total_return": float(growth.iloc[-1] - 1.0),
        "cagr": _cagr(growth),
        "sharpe": float(excess.mean() / std * math.sqrt(bars_per_year(result))) if std > 0 else math.nan,
        "max_drawdown": float((1.0 - growth.to_numpy() / peak).max()),
        "trades": int(closed_inside),
    }, growth


def _stitch(curves: list[pd.Series], init_cash: float) -> pd.Series:
    level, parts = init_cash, []
    for growth in curves:
        parts.append(level * growth)
        level = float(parts[-1].iloc[-1])
    return pd.concat(parts).rename("equity")


def _cagr(curve: pd.Series, start: float = 1.0) -> float:
    """CAGR of a curve that began at ``start``, over the calendar time it covers (its first
    bar's open to its last bar's close), as the ``cagr`` metric."""
    index = curve.index
    bar = pd.Series(index).diff().min() if len(index) > 1 else pd.Timedelta(hours=1)
    years = (index[-1] - index[0] + bar) / _YEAR
    return float(max(curve.iloc[-1] / start, 0.0) ** (1.0 / years) - 1.0)


def _warmup(tpl: Template, params: Mapping[str, Any]) -> int:
    from workbench.engine.indicators import lookback

    keys = kernel_for(tpl.name).indicator_keys(params)
    return _WARMUP_SPANS * max([lookback(key) for key in keys] + [1])


def _plain(value: Any) -> Any:
    """A sweep cell as the parameter value it was (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value


def _bars(name: str, value: object, low: int, total: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= total:
        raise ParameterError(
            f"{name}: {value!r} is not allowed; expected a whole number of bars from {low} to the candles' {total}",
            param=name,
            value=value,
        )
    return int(value)
