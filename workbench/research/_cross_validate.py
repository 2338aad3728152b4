"""Combinatorial purged cross-validation and the probability of backtest overfitting.

A walk-forward tests one path through history: each choice is scored once, on the window
after its training window, and the verdict rests on that one sequence of windows.
Combinatorial purged cross-validation (CPCV; López de Prado, *Advances in Financial Machine
Learning*, 2018, ch. 7 and 12) cuts the candles into ``N`` contiguous groups and takes every
combination of ``k`` of them as a test set, choosing the grid's best row on the others. Each
group is tested in C(N-1, k-1) splits, which assemble φ = C(N, k)·k/N complete out-of-sample
paths: a distribution of the Sharpe ratio that choosing from this grid earns, not one
number. Training bars right before a test group (``purge``) and right after it
(``embargo``) are left out, because a position held across the boundary and an indicator
read over it would otherwise let the training score see the test's prices.

The probability of backtest overfitting (PBO; Bailey, Borwein, López de Prado and Zhu, "The
Probability of Backtest Overfitting", SSRN 2326253, 2015; Journal of Computational Finance
20(4), 2017) asks the grid itself. Combinatorially symmetric cross-validation (CSCV) splits
the ``N`` groups into two halves every way there is, C(N, N/2); in each split the row best in
one half is ranked among all rows in the other half, and λ, the logit of that relative rank,
is above 0 when it stayed above the median. PBO is the share of splits where it did not:
near 0 the search found something that persists, near 0.5 or above the best row is a draw.

Every grid row is backtested **once**, over all the candles, by the template's compiled
kernel (as :func:`workbench.sweep` runs it, recording the equity): each group is traded
with warm indicators and the position the strategy really held coming into it. The bar
returns are summed over the stretches between the groups' edges and the purge and embargo
limits, and every split's in- and out-of-sample score is a sum of those stretches, so no
split backtests anything again.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numba import njit, prange

from workbench.backtest import sweep
from workbench.backtest._run import _cfg, _combinations, _Market, _settings
from workbench.backtest._venues import market_rules
from workbench.engine import core as e
from workbench.engine.indicators import IndicatorKey, stack
from workbench.errors import ParameterError
from workbench.research._trials import record_run
from workbench.strategies import Template, get_template, kernel_for

OBJECTIVES = ("sharpe", "sortino", "total_return")
_MAX_GROUPS = 20  # C(20, 10) = 184,756 CSCV splits; 22 would be 705,432
_SPLIT_CHUNK = 2048  # CSCV splits scored at once
# what the rows' backtests take (as sweep's arguments of the same names, defaults included)
_SETTINGS = ("risk", "fees", "slippage", "init_cash", "maintenance_margin", "risk_free", "market", "funding")


class _Sums(NamedTuple):
    """Sums of bar returns ``r`` over stretches of bars, one row per grid row: all a Sharpe,
    Sortino or total return of any union of stretches needs (``docs/METRICS.md``)."""

    bars: np.ndarray
    total: np.ndarray  # sum of r
    squares: np.ndarray  # sum of r²
    shortfall: np.ndarray  # sum of min(r - rf, 0)²
    growth: np.ndarray  # sum of log(1 + r), a ruin's -inf floored at the log of the smallest float

    def over(self, weights: np.ndarray) -> _Sums:
        """Summed over the stretches ``weights`` (stretches x sets, 0 or 1) selects."""
        return _Sums(*(values @ weights for values in self))

    def pick(self, index: Any) -> _Sums:
        return _Sums(*(values[index] for values in self))

    def metric(self, name: str, rf: float, ann: float) -> np.ndarray:
        """``name`` as the backtest defines it, over the bars summed; NaN where it is undefined."""
        if name == "total_return":
            return np.expm1(self.growth)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = self.total / self.bars
            if name == "sharpe":
                spread = np.sqrt(np.maximum(self.squares - self.total * mean, 0.0) / (self.bars - 1.0))
            else:
                spread = np.sqrt(self.shortfall / self.bars)
            return np.where(spread > 0, (mean - rf) / spread * math.sqrt(ann), np.nan)

    def metrics(self, rf: float, ann: float) -> dict[str, np.ndarray]:
        return {name: self.metric(name, rf, ann) for name in OBJECTIVES}


@dataclass(frozen=True, repr=False, eq=False)
class CrossValidation:
    """What :func:`cross_validate` returns.

    Attributes:
        groups: one row per group (numbered from 1): its first and last bar's open time and
            its number of bars.
        splits: one row per CPCV split: the test groups, the training and test bars counted
            (after purge and embargo), the parameters chosen on the training bars (the grid's
            columns), their in-sample ``is_*`` and out-of-sample ``oos_*`` Sharpe, Sortino and
            total return (the test groups' bars, joined).
        paths: one row per backtest path (φ of them): the out-of-sample ``sharpe``,
            ``sortino`` and ``total_return`` of all the groups, each traded by the choice of
            one split that tested it (path p: the p-th such split, in the order of ``splits``).
        logits: λ of every CSCV split of the groups into halves: the logit of the relative
            out-of-sample rank of the row best in sample (above 0: above the median).
        objective: the metric rows are chosen and ranked by.
        n_groups, k_test, purge, embargo: how the candles were split.
    """

    groups: pd.DataFrame
    splits: pd.DataFrame
    paths: pd.DataFrame
    logits: pd.Series
    objective: str
    n_groups: int
    k_test: int
    purge: int
    embargo: int

    @property
    def pbo(self) -> float:
        """The probability of backtest overfitting: the share of CSCV splits whose in-sample
        best ranked at or below the out-of-sample median (λ <= 0)."""
        return float((self.logits <= 0).mean())

    def indices(self, split: int) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the training and the test bars of CPCV split ``split`` (a row
        number of :attr:`splits`): purge and embargo taken out of the training bars."""
        if split not in self.splits.index:
            raise ParameterError(
                f"split: {split!r} is not allowed; expected a split from 1 to {len(self.splits)}",
                param="split",
                value=split,
            )
        edges = np.append(0, self.groups["bars"].cumsum().to_numpy())
        test_groups = np.asarray(self.splits.at[split, "test_groups"]) - 1
        bars = np.arange(edges[-1])
        group = np.searchsorted(edges, bars, side="right") - 1
        tested = np.isin(group, test_groups)
        near = np.zeros(len(bars), bool)
        for g in test_groups:
            near |= (bars >= edges[g] - self.purge) & (bars < edges[g])
            near |= (bars >= edges[g + 1]) & (bars < edges[g + 1] + self.embargo)
        return bars[~tested & ~near], bars[tested]

    @cached_property
    def figure(self):
        """Two bokeh histograms side by side: the CSCV logits (PBO is the share left of 0) and
        the out-of-sample Sharpe ratio of the CPCV paths."""
        from bokeh.layouts import row
        from bokeh.models import Span
        from bokeh.plotting import figure

        charts = []
        for values, title, label in (
            (
                self.logits.to_numpy(),
                f"PBO {self.pbo:.2f}: logit of the in-sample best's out-of-sample rank, {len(self.logits):,} splits",
                "λ",
            ),
            (self.paths["sharpe"].to_numpy(), f"Out-of-sample Sharpe of {len(self.paths)} CPCV paths", "sharpe"),
        ):
            finite = values[np.isfinite(values)]
            counts, edges = np.histogram(finite, bins=min(40, max(5, len(finite) // 5)))
            chart = figure(height=300, width=450, title=title, tools="xpan,xwheel_zoom,box_zoom,reset,save")
            chart.quad(
                top=counts,
                bottom=0,
                left=edges[:-1],
                right=edges[1:],
                fill_color="#1f77b4",
                line_color="white",
                fill_alpha=0.7,
            )
            chart.add_layout(Span(location=0, dimension="height", line_color="#d62728", line_dash="dashed"))
            chart.xaxis.axis_label = label
            chart.yaxis.axis_label = "count"
            charts.append(chart)
        return row(charts)

    def __repr__(self) -> str:
        return (
            f"<CrossValidation {len(self.splits)} splits, {len(self.paths)} paths by {self.objective}: median "
            f"out-of-sample sharpe={self.paths['sharpe'].median():.3f} PBO={self.pbo:.3f}>"
        )


def cross_validate(
    template: str | Template,
    candles: pd.DataFrame,
    grid: Mapping[str, Any],
    *,
    n_groups: int = 16,
    k_test: int = 2,
    purge: int = 0,
    embargo: int = 0,
    objective: str = "sharpe",
    **settings: Any,
) -> CrossValidation:
    """Cross-validate the choice of a grid row: CPCV paths and the probability of overfitting.

    Args:
        template, candles, grid: as :func:`workbench.sweep` (rule strategies' variables too).
        n_groups: contiguous groups the candles are cut into (as equal as whole bars allow);
            even, since CSCV splits them in halves; from 2 to 20.
        k_test: groups tested in each CPCV split; C(n_groups, k_test) splits give
            C(n_groups - 1, k_test - 1) paths.
        purge: training bars left out right before each test group.
        embargo: training bars left out right after each test group (López de Prado
            suggests about 1 % of the bars, or the strategy's longest indicator window).
        objective: what rows are chosen and ranked by: ``"sharpe"``, ``"sortino"`` or
            ``"total_return"`` over the bars of a set of groups (defined as in
            ``docs/METRICS.md``; the others need contiguous time).
        settings: passed to the backtest of every row: risk, fees, slippage, init_cash,
            maintenance_margin, risk_free, market, funding (as :func:`workbench.sweep`).

    Returns:
        A :class:`CrossValidation`: ``.splits`` (chosen parameters, in- and out-of-sample
        scores per split), ``.paths`` (out-of-sample Sharpe per path), ``.logits`` and
        ``.pbo`` (CSCV), ``.indices(split)`` and ``.figure``.

    Raises:
        ParameterError: a grid of one row, groups that do not fit the candles, purge and
            embargo that leave a split no training bar, or a bad argument.
        DatabaseError: the run could not be recorded in the tenant's trial ledger
            (:func:`workbench.trials`: one row, the grid's combinations).

    Example:
        >>> cv = wb.cross_validate("channel", candles, {"entry_window": range(10, 200, 10),
        ...                                             "exit_window": range(5, 100, 5)}, embargo=48)  # doctest: +SKIP
        >>> cv.pbo, cv.paths["sharpe"].describe()                                                # doctest: +SKIP
        >>> cv.figure                                                                           # doctest: +SKIP
    """
    tpl = template if isinstance(template, Template) else get_template(template)
    if objective not in OBJECTIVES:
        raise ParameterError(
            f"objective: {objective!r} is not allowed; expected one of {', '.join(OBJECTIVES)}",
            param="objective",
            value=objective,
        )
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise ParameterError(
            f"settings: {', '.join(unknown)} not allowed; expected any of {', '.join(_SETTINGS)} "
            "(rows are chosen by objective=...)",
            param="settings",
            value=unknown,
        )
    args = {name: settings.get(name, inspect.signature(sweep).parameters[name].default) for name in _SETTINGS}
    market = _Market(candles, funding=args["funding"])
    total = len(market.candles)
    if (
        isinstance(n_groups, bool)
        or not isinstance(n_groups, (int, np.integer))
        or n_groups % 2
        or not 2 <= n_groups <= min(_MAX_GROUPS, total // 2)
    ):
        raise ParameterError(
            f"n_groups: {n_groups!r} is not allowed; expected an even number of groups from 2 to "
            f"{min(_MAX_GROUPS, total // 2)} (at least 2 of the candles' {total} bars each)",
            param="n_groups",
            value=n_groups,
        )
    k_test = _whole("k_test", k_test, 1, n_groups - 1)
    purge, embargo = _whole("purge", purge, 0, total), _whole("embargo", embargo, 0, total)
    combos = _combinations(tpl, grid)
    if len(combos) < 2:
        raise ParameterError(
            "grid: 1 combination is not allowed; expected at least 2 rows to choose from",
            param="grid",
            value=len(combos),
        )
    edges = np.arange(n_groups + 1) * total // n_groups
    inner = edges[1:-1]
    starts = np.unique(np.concatenate((edges[:-1], inner - purge, inner + embargo)))
    starts = starts[(starts >= 0) & (starts < total)]
    group = np.searchsorted(edges, starts, side="right") - 1
    ann = float(market.bars_per_year)
    rf = (1.0 + args["risk_free"]) ** (1.0 / ann) - 1.0
    sums = _grid_sums(tpl, market, combos, args, starts, rf)

    splits = list(itertools.combinations(range(n_groups), k_test))
    tested = np.array([np.isin(group, split) for split in splits]).T.astype(np.float64)  # stretches x splits
    near = np.zeros_like(tested, dtype=bool)
    for j, split in enumerate(splits):
        for g in split:
            near[:, j] |= (starts >= edges[g] - purge) & (starts < edges[g])
            near[:, j] |= (starts >= edges[g + 1]) & (starts < edges[g + 1] + embargo)
    training = ((tested == 0) & ~near).astype(np.float64)
    train_sums, test_sums = sums.over(training), sums.over(tested)
    short = np.flatnonzero(train_sums.bars[0] < 2)
    if short.size:
        raise ParameterError(
            f"purge + embargo: {purge} + {embargo} bars leave the split testing groups "
            f"{tuple(g + 1 for g in splits[short[0]])} with {int(train_sums.bars[0, short[0]])} "
            "training bars; expected at least 2 (less purge or embargo, or fewer groups)",
            param="purge",
            value=purge,
        )
    chosen = _best(train_sums.metric(objective, rf, ann))
    columns = np.arange(len(splits))
    in_sample = train_sums.pick((chosen, columns)).metrics(rf, ann)
    out_of_sample = test_sums.pick((chosen, columns)).metrics(rf, ann)
    table = pd.DataFrame(
        {
            "test_groups": [tuple(g + 1 for g in split) for split in splits],
            "train_bars": train_sums.bars[0].astype(np.int64),
            "test_bars": test_sums.bars[0].astype(np.int64),
        }
    )
    for name in grid:
        table[name] = [tpl.axis(combos[c], name) for c in chosen]
    for prefix, values in (("is", in_sample), ("oos", out_of_sample)):
        for name in OBJECTIVES:
            table[f"{prefix}_{name}"] = values[name]
    table.index = pd.RangeIndex(1, len(table) + 1, name="split")

    in_group = np.equal.outer(group, np.arange(n_groups)).astype(np.float64)  # stretches x groups
    per_group = sums.over(in_group)
    # path p trades group g by the choice of the p-th split (in order) that tested g
    by_path = np.array([[j for j, split in enumerate(splits) if g in split] for g in range(n_groups)]).T
    path_sums = per_group.pick((chosen[by_path], np.arange(n_groups))).over(np.ones((n_groups, 1)))
    paths = pd.DataFrame({name: values[:, 0] for name, values in path_sums.metrics(rf, ann).items()})
    paths.index = pd.RangeIndex(1, len(paths) + 1, name="path")

    record_run(tpl, candles, len(combos), "cross_validate", grid)  # the tenant's trial ledger
    index = market.candles.index
    groups = pd.DataFrame(
        {"start": index[edges[:-1]], "end": index[edges[1:] - 1], "bars": np.diff(edges)},
        index=pd.RangeIndex(1, n_groups + 1, name="group"),
    )
    return CrossValidation(
        groups=groups,
        splits=table,
        paths=paths,
        logits=_cscv(per_group, objective, rf, ann),
        objective=objective,
        n_groups=n_groups,
        k_test=k_test,
        purge=purge,
        embargo=embargo,
    )


def _cscv(per_group: _Sums, objective: str, rf: float, ann: float) -> pd.Series:
    """λ of every split of the groups into halves (Bailey et al., section 2): the in-sample
    best row's out-of-sample rank among the N rows (average rank for ties, 1 the worst,
    an undefined score below every defined one) over N + 1, as a logit."""
    n_groups = per_group.bars.shape[1]
    halves = np.array(list(itertools.combinations(range(n_groups), n_groups // 2)))
    logits = []
    for first in range(0, len(halves), _SPLIT_CHUNK):
        chosen = np.zeros((n_groups, min(_SPLIT_CHUNK, len(halves) - first)))
        chosen[halves[first : first + _SPLIT_CHUNK].T, np.arange(chosen.shape[1])] = 1.0
        in_sample = per_group.over(chosen).metric(objective, rf, ann)
        out = np.nan_to_num(per_group.over(1.0 - chosen).metric(objective, rf, ann), nan=-np.inf)
        best = out[_best(in_sample), np.arange(out.shape[1])]
        rank = (out < best).sum(axis=0) + ((out == best).sum(axis=0) + 1) / 2
        relative = rank / (len(out) + 1)
        logits.append(np.log(relative / (1.0 - relative)))
    return pd.Series(np.concatenate(logits), index=pd.RangeIndex(1, len(halves) + 1, name="split"), name="logit")


def _best(scores: np.ndarray) -> np.ndarray:
    """The row of the highest score in each column; an undefined (NaN) score is never best."""
    return np.nan_to_num(scores, nan=-np.inf).argmax(axis=0)


def _grid_sums(
    tpl: Template, market: _Market, combos: list[dict[str, Any]], args: Mapping[str, Any], starts: np.ndarray, rf: float
) -> _Sums:
    """Every row's bar returns from one backtest over all the candles, as sums over the
    stretches beginning at ``starts``: the sweep's set-up, with the equity recorded."""
    limits = tpl.validate_risk(args["risk"])
    settings = _settings(
        args["fees"],
        args["slippage"],
        args["init_cash"],
        args["maintenance_margin"],
        args["risk_free"],
        market_rules(args["market"]),
    )
    kernel = kernel_for(tpl.name)
    keys: dict[IndicatorKey, int] = {}
    rows = np.array([[keys.setdefault(k, len(keys)) for k in kernel.indicator_keys(c)] for c in combos], dtype=np.int64)
    ind = stack(list(keys), market.arrays)
    params = np.array([kernel.param_vector(c) for c in combos])
    cfgs = np.array([_cfg(settings, limits, kernel.leverage(c), market) for c in combos])
    sums = np.zeros((len(_Sums._fields), len(combos), len(starts)))
    a = market.arrays
    _simulate_sums(
        kernel.simulate,
        a["open"],
        a["high"],
        a["low"],
        a["close"],
        market.day,
        market.funding,
        ind,
        rows,
        params,
        cfgs,
        starts,
        rf,
        sums,
    )
    return _Sums(*sums)


@njit(cache=True, parallel=True)
def _simulate_sums(simulate, open_, high, low, close, day, funding, ind, rows, params, cfgs, starts, rf, sums):
    """Each row backtested with its equity recorded, reduced to ``sums[:, row]`` at once:
    memory stays at one equity curve per thread however many rows and bars."""
    no_fills = np.zeros((0, 5))
    no_intent = np.zeros((0, e.INTENT_WIDTH))
    for j in prange(params.shape[0]):
        equity = np.empty(close.shape[0])
        simulate(
            open_,
            high,
            low,
            close,
            day,
            funding,
            ind,
            rows[j],
            params[j],
            cfgs[j],
            no_fills,
            equity,
            np.empty(close.shape[0]),
            np.empty(e.N_METRICS),
            no_intent,
        )
        _stretch_sums(equity, cfgs[j][e.C_INIT_CASH], starts, rf, sums[:, j])


@njit(cache=True)
def _stretch_sums(equity, init_cash, starts, rf, out):
    """Add the bar returns of ``equity`` (the first bar against ``init_cash``, a bar after the
    account was wiped out 0) into ``out[:, k]`` for the stretch ``k`` that begins at ``starts[k]``,
    in the order of :class:`_Sums`' fields."""
    tiny = np.finfo(np.float64).tiny
    previous = init_cash
    k = -1
    for t in range(equity.shape[0]):
        if k + 1 < starts.shape[0] and t == starts[k + 1]:
            k += 1
        r = equity[t] / previous - 1.0 if previous > 0.0 else 0.0
        previous = equity[t]
        short = min(r - rf, 0.0)
        out[0, k] += 1.0
        out[1, k] += r
        out[2, k] += r * r
        out[3, k] += short * short
        out[4, k] += np.log(max(1.0 + r, tiny))


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ParameterError(
            f"{name}: {value!r} is not allowed; expected a whole number from {low} to {high}", param=name, value=value
        )
    return int(value)
