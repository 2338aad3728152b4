"""Monte Carlo of a backtest: the equity curves the same edge could have drawn in another order.

One backtest is one path; its maximum drawdown is one draw of a random quantity. Resampling
what the strategy did gives the distribution: how deep the drawdown could have been, how
long under water, how likely ruin.

* ``method="trades"`` resamples the closed trades' **returns** (each trade's pnl over the
  equity it was entered with) and compounds them. Reshuffling absolute pnl instead would
  replay a trade sized for a large account on a small one and draw drawdowns no strategy
  could suffer.
* ``method="bars"`` resamples the equity's bar returns in blocks of consecutive bars (a
  moving-block bootstrap), which keeps the returns' short-range dependence (a trade held
  for many bars) and what happens between trades.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from workbench.backtest import BacktestResult
from workbench.errors import ParameterError
from workbench.research._returns import bar_returns

_CHUNK = 64  # paths simulated at once: memory stays at 64 x steps however many paths are asked for
_BAND_POINTS = 500  # equity percentiles kept at most at this many steps for the fan chart
PERCENTILES = (5, 25, 50, 75, 95)


class MonteCarlo:
    """What :func:`monte_carlo` returns: one row per simulated path, and their percentiles.

    Attributes:
        paths: one row per path: ``final_equity``, ``total_return``, ``max_drawdown`` (a
            positive fraction, as the backtest's metric), ``time_under_water`` (the longest
            stretch below a previous peak, in ``unit``) and ``min_equity``.
        bands: the equity's percentiles (columns ``p5`` ... ``p95``) at each step: the trade
            number for ``"trades"``, the bar's time for ``"bars"`` (at most about 500 steps).
        actual: the backtest's own path on the same steps.
        method, block, seed: how the paths were drawn (``block`` is None for trades).
        unit: ``"trades"`` or ``"bars"``, the step of the paths and of ``time_under_water``.
        init_cash: the equity every path starts from.
    """

    def __init__(
        self,
        *,
        paths: pd.DataFrame,
        bands: pd.DataFrame,
        actual: pd.Series,
        method: str,
        block: int | None,
        seed: int | None,
        init_cash: float,
    ):
        self.paths = paths
        self.bands = bands
        self.actual = actual
        self.method = method
        self.block = block
        self.seed = seed
        self.init_cash = init_cash
        self.unit = method

    def quantiles(self, q: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)) -> pd.DataFrame:
        """The quantiles of every path statistic, one row per quantile (0.05 is the 5 % worst
        for equity, the 5 % mildest for drawdown: read ``max_drawdown`` at 0.95 for the bad tail)."""
        for value in q:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ParameterError(
                    f"q: {value!r} is not allowed; expected quantiles from 0 to 1", param="q", value=value
                )
        table = self.paths.quantile(list(q))
        table.index.name = "quantile"
        return table

    def probability_of_ruin(self, floor: float = 0.0) -> float:
        """The share of paths whose equity fell to ``floor`` (quote currency) or below at any
        step; 0 asks how often the account is wiped out, ``0.5 * init_cash`` how often it halves."""
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor):
            raise ParameterError(
                f"floor: {floor!r} is not allowed; expected an equity in the quote currency", param="floor", value=floor
            )
        return float((self.paths["min_equity"] <= floor).mean())

    @cached_property
    def figure(self):
        """A bokeh fan chart: the 5-95 % and 25-75 % bands of equity, the median and the backtest."""
        from bokeh.models import ColumnDataSource, HoverTool, NumeralTickFormatter
        from bokeh.plotting import figure

        by_time = self.unit == "bars"
        x = self.bands.index.tz_convert(None) if by_time and self.bands.index.tz is not None else self.bands.index
        source = ColumnDataSource(
            {"x": x, **{c: self.bands[c].to_numpy() for c in self.bands}, "actual": self.actual.to_numpy()}
        )
        chart = figure(
            height=350,
            width=900,
            x_axis_type="datetime" if by_time else "linear",
            title=f"Monte Carlo: {len(self.paths):,} paths resampling the backtest's {self.unit}",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
        )
        chart.varea("x", "p5", "p95", source=source, fill_color="#1f77b4", fill_alpha=0.15, legend_label="5-95 %")
        chart.varea("x", "p25", "p75", source=source, fill_color="#1f77b4", fill_alpha=0.3, legend_label="25-75 %")
        median = chart.line("x", "p50", source=source, color="#1f77b4", line_width=2, legend_label="median")
        chart.line("x", "actual", source=source, color="#d62728", legend_label="backtest")
        chart.add_tools(
            HoverTool(
                renderers=[median],
                tooltips=[
                    ("p5", "@p5{0,0}"),
                    ("median", "@p50{0,0}"),
                    ("p95", "@p95{0,0}"),
                    ("backtest", "@actual{0,0}"),
                ],
            )
        )
        chart.xaxis.axis_label = "time" if by_time else "trade"
        chart.yaxis.axis_label = "equity"
        chart.yaxis.formatter = NumeralTickFormatter(format="0,0")
        chart.legend.location = "top_left"
        chart.legend.click_policy = "hide"
        return chart

    def __repr__(self) -> str:
        median = self.paths.median()
        return (
            f"<MonteCarlo {len(self.paths)} paths of {self.unit}: median final_equity="
            f"{median['final_equity']:,.2f} median max_drawdown={median['max_drawdown']:.4f} "
            f"P(ruin)={self.probability_of_ruin():.4f}>"
        )


def monte_carlo(
    result: BacktestResult,
    n: int = 1000,
    *,
    method: Literal["trades", "bars"] = "trades",
    block: int | None = None,
    seed: int | None = None,
) -> MonteCarlo:
    """Resample a backtest into ``n`` equity paths: the range of outcomes its edge allows.

    Args:
        result: a :class:`BacktestResult` with at least one closed trade.
        n: how many paths to draw.
        method: ``"trades"`` draws the closed trades' returns (pnl over the equity each was
            entered with) with replacement, as many as the backtest closed, and compounds
            them: the order of trades. ``"bars"`` draws blocks of ``block`` consecutive bar
            returns of the equity until the backtest's length: the order of market stretches.
        block: bars per block, ``"bars"`` only; default the cube root of the number of bars
            (Hall, Horowitz and Jing, 1995), about a day of hourly bars over two years.
        seed: a seed for the same paths every run; None draws fresh ones.

    Returns:
        A :class:`MonteCarlo`: ``.paths`` (final equity, max drawdown, time under water per
        path), ``.quantiles()``, ``.probability_of_ruin(floor)`` and ``.figure`` (a fan chart).

    Raises:
        ParameterError: no closed trade to resample, or an argument outside its range.

    Example:
        >>> import workbench as wb
        >>> result = wb.backtest("channel", wb.load_candles(), {"entry_window": 48})  # doctest: +SKIP
        >>> mc = wb.monte_carlo(result, 2000, seed=1)                                  # doctest: +SKIP
        >>> mc.quantiles()["max_drawdown"]          # how deep it could have been     # doctest: +SKIP
        >>> mc.probability_of_ruin(floor=0.5 * mc.init_cash)   # how often it halves  # doctest: +SKIP
        >>> mc.figure                                                                # doctest: +SKIP
    """
    if not isinstance(result, BacktestResult):
        raise ParameterError(
            f"result: a {type(result).__name__} is not allowed; expected a BacktestResult (wb.backtest(...))",
            param="result",
            value=result,
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 1_000_000:
        raise ParameterError(
            f"n: {n!r} is not allowed; expected a whole number of paths from 1 to 1,000,000", param="n", value=n
        )
    if method not in ("trades", "bars"):
        raise ParameterError(
            f"method: {method!r} is not allowed; expected 'trades' or 'bars'", param="method", value=method
        )
    trades = result.trades
    if trades.empty:
        raise ParameterError(
            f"result: the {result.template.name} backtest {result.params} closed no trade, so there "
            "is nothing to resample; backtest more candles or other parameters",
            param="result",
            value=0,
        )
    init_cash = float(result.settings["init_cash"])
    rng = np.random.default_rng(seed)
    if method == "trades":
        if block is not None:
            raise ParameterError(
                f"block: {block!r} is not allowed with method='trades', which draws single trades; "
                "use method='bars' for blocks",
                param="block",
                value=block,
            )
        entered_with = init_cash + np.concatenate(([0.0], trades["pnl"].cumsum().to_numpy()[:-1]))
        returns = trades["pnl"].to_numpy(np.float64) / entered_with
        steps = pd.RangeIndex(len(returns) + 1, name="trade")
        draw = _draw_single(returns, rng)
        actual = init_cash * _compound(returns[None, :])[0]
    else:
        returns = bar_returns(result)
        if block is None:
            block = max(1, round(len(returns) ** (1 / 3)))
        elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 1 <= block <= len(returns):
            raise ParameterError(
                f"block: {block!r} is not allowed; expected a whole number of bars from 1 to {len(returns)}",
                param="block",
                value=block,
            )
        block = int(block)
        start = result.candles.index[0] - (result.candles.index[1] - result.candles.index[0])
        steps = pd.DatetimeIndex([start]).append(result.candles.index).rename("time")
        draw = _draw_blocks(returns, block, rng)
        actual = np.concatenate(([init_cash], result.equity.to_numpy(np.float64)))
    kept = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), _BAND_POINTS)).round().astype(np.int64))
    stats, sampled = [], []
    for first in range(0, n, _CHUNK):
        equity = init_cash * _compound(draw(min(_CHUNK, n - first)))
        stats.append(_path_stats(equity, init_cash))
        sampled.append(equity[:, kept])
    paths = pd.DataFrame(
        np.concatenate(stats), columns=["final_equity", "max_drawdown", "time_under_water", "min_equity"]
    )
    paths.insert(1, "total_return", paths["final_equity"] / init_cash - 1.0)
    paths["time_under_water"] = paths["time_under_water"].astype(np.int64)
    paths.index.name = "path"
    bands = pd.DataFrame(
        np.percentile(np.concatenate(sampled), PERCENTILES, axis=0).T,
        index=steps[kept],
        columns=[f"p{p}" for p in PERCENTILES],
    )
    return MonteCarlo(
        paths=paths,
        bands=bands,
        actual=pd.Series(actual[kept], index=steps[kept], name="equity"),
        method=method,
        block=block if method == "bars" else None,
        seed=seed,
        init_cash=init_cash,
    )


def _draw_single(returns: np.ndarray, rng: np.random.Generator):
    return lambda count: returns[rng.integers(0, len(returns), size=(count, len(returns)))]


def _draw_blocks(returns: np.ndarray, block: int, rng: np.random.Generator):
    blocks = -(-len(returns) // block)

    def draw(count: int) -> np.ndarray:
        starts = rng.integers(0, len(returns) - block + 1, size=(count, blocks))
        index = (starts[:, :, None] + np.arange(block)).reshape(count, -1)[:, : len(returns)]
        return returns[index]

    return draw


def _compound(returns: np.ndarray) -> np.ndarray:
    """Growth of 1 along each row, from a first column of 1; a loss of everything stays at 0."""
    growth = np.cumprod(np.maximum(1.0 + returns, 0.0), axis=1)
    return np.concatenate((np.ones((len(returns), 1)), growth), axis=1)


def _path_stats(equity: np.ndarray, init_cash: float) -> np.ndarray:
    """Per path: final equity, max drawdown, longest stretch under a previous peak, min equity."""
    peak = np.maximum.accumulate(np.maximum(equity, init_cash), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, 1.0 - equity / peak, 0.0)
    under = equity < peak
    step = np.arange(equity.shape[1])
    last_above = np.maximum.accumulate(np.where(under, -1, step), axis=1)
    longest = np.where(under, step - last_above, 0).max(axis=1)
    return np.column_stack((equity[:, -1], drawdown.max(axis=1), longest, equity.min(axis=1)))
