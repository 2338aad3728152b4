"""Look-ahead check: a strategy's decisions up to a bar must not change when later bars are cut.

A backtest that reads one bar of the future looks brilliant and cannot be traded: live, the
future is not there. Its signature is that what the strategy did at bar ``t`` depends on
candles after ``t``. So the strategy is backtested on all the candles and again on the
candles cut short at many bars; every fill (bar, size, price, fee, kind) and the position
at every bar's close before a cut must be the same in both runs, to the last bit.

The rule language cannot express look-ahead: every operand is an indicator known at the
bar's close (``workbench/engine/indicators.py``: windows before or ending at the bar),
and there is no shift, offset or future bar to name. What the check can still catch is code
that peeks: an indicator or a kernel (a template's, or a future one) that reads past the
bar. The suite proves it does by swapping a centred moving average in for ``SMA``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest import BacktestResult, backtest
from workbench.errors import ParameterError
from workbench.strategies import Template, get_template, templates

_FILL_COLUMNS = ("size", "price", "fee", "kind")


@dataclass(frozen=True)
class LookAhead:
    """What :func:`check_lookahead` found.

    Attributes:
        passed: True when every cut run decided the same fills and positions as the full run
            on every bar before its cut.
        cuts: the bar positions the candles were cut at (the runs had bars ``0 .. cut - 1``).
        bar: the first bar (its open time) whose decision differed, else None.
        cut: the cut that showed it, else None.
        difference: what differed at that bar, one line, else None.
    """

    passed: bool
    cuts: tuple[int, ...]
    bar: pd.Timestamp | None = None
    cut: int | None = None
    difference: str | None = None

    def __str__(self) -> str:
        if self.passed:
            return f"no look-ahead: the same fills and positions before each of {len(self.cuts)} cuts"
        return f"look-ahead at {self.bar} (candles cut at bar {self.cut}): {self.difference}"


def check_lookahead(
    template_or_rules: str | Template | Mapping[str, Any],
    candles: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    cuts: int | Sequence[int] = 20,
    seed: int | None = 0,
    **settings: Any,
) -> LookAhead:
    """Check that a strategy decides nothing from candles after the bar it decides on.

    Args:
        template_or_rules: a template name or :class:`Template`, or a rule strategy (text or
            JSON), which backtests as the ``rules`` template.
        candles: the candles to backtest on.
        params: the template's parameters (for rules, values of its variables).
        cuts: how many cuts, one drawn at random within each of as many equal stretches of
            the candles; or the bar positions to cut at (each from 2 to ``len(candles) - 1``).
        seed: the seed of the drawn cuts (the same cuts every run); None draws fresh ones.
        settings: passed to every backtest (fees, slippage, risk...).

    Returns:
        A :class:`LookAhead`: ``.passed``, and when it failed the first ``.bar`` that
        differed, the ``.cut`` that showed it and the ``.difference`` in one line.

    Raises:
        ParameterError: a cut outside the candles or a bad count.

    Example:
        >>> wb.check_lookahead("buy when close > EMA(50)\\nexit long when close < EMA(50)", candles)  # doctest: +SKIP
        >>> wb.check_lookahead("channel", candles, {"entry_window": 48}).passed                      # doctest: +SKIP
    """
    if isinstance(template_or_rules, Template) or (
        isinstance(template_or_rules, str) and template_or_rules in templates()
    ):
        tpl = template_or_rules if isinstance(template_or_rules, Template) else get_template(template_or_rules)
        params = dict(params or {})
    else:
        tpl, params = get_template("rules"), {"rules": template_or_rules, **(params or {})}
    full = backtest(tpl, candles, params, **settings)
    total = len(full.candles)
    positions = _cuts(cuts, total, seed)
    found: tuple[int, int, str] | None = None  # (bar, cut, difference)
    for cut in positions:
        part = backtest(tpl, full.candles.iloc[:cut], params, **settings)
        differs = _first_difference(full, part, cut)
        if differs is not None and (found is None or differs[0] < found[0]):
            found = (differs[0], cut, differs[1])
    if found is None:
        return LookAhead(passed=True, cuts=positions)
    bar, cut, difference = found
    return LookAhead(passed=False, cuts=positions, bar=full.candles.index[bar], cut=cut, difference=difference)


def _cuts(cuts: int | Sequence[int], total: int, seed: int | None) -> tuple[int, ...]:
    if isinstance(cuts, (int, np.integer)) and not isinstance(cuts, bool):
        if not 1 <= cuts <= total - 2:
            raise ParameterError(
                f"cuts: {cuts!r} is not allowed; expected a number of cuts from 1 to {total - 2}",
                param="cuts",
                value=cuts,
            )
        bounds = np.linspace(2, total, int(cuts) + 1).astype(np.int64)
        drawn = np.random.default_rng(seed).integers(bounds[:-1], np.maximum(bounds[1:], bounds[:-1] + 1))
        return tuple(sorted({int(c) for c in drawn}))
    if isinstance(cuts, (str, bytes)) or not isinstance(cuts, Sequence) or not cuts:
        raise ParameterError(
            f"cuts: {cuts!r} is not allowed; expected a number of cuts or a list of bar positions",
            param="cuts",
            value=cuts,
        )
    for cut in cuts:
        if isinstance(cut, bool) or not isinstance(cut, (int, np.integer)) or not 2 <= cut <= total - 1:
            raise ParameterError(
                f"cuts: {cut!r} is not allowed; expected bar positions from 2 to {total - 1}", param="cuts", value=cut
            )
    return tuple(sorted({int(c) for c in cuts}))


def _first_difference(full: BacktestResult, part: BacktestResult, cut: int) -> tuple[int, str] | None:
    """The first bar before ``cut`` whose fills or closing position differ, and how; None if none."""
    found = []
    same = np.equal(full.position.to_numpy()[:cut], part.position.to_numpy())
    if not same.all():
        bar = int(np.argmin(same))
        found.append(
            (
                bar,
                f"position {full.position.iloc[bar]:g} with all {len(full.candles)} bars, "
                f"{part.position.iloc[bar]:g} with {cut}",
            )
        )
    before = full.fills[full.fills["time"] < full.candles.index[cut]]
    mine, theirs = _fill_rows(before, full), _fill_rows(part.fills, part)
    for i in range(max(len(mine), len(theirs))):
        if i >= len(mine) or i >= len(theirs) or mine[i] != theirs[i]:
            bar = min(row[0] for row in (mine[i : i + 1] + theirs[i : i + 1]))
            found.append(
                (bar, f"fill {_describe(mine, i)} with all {len(full.candles)} bars, {_describe(theirs, i)} with {cut}")
            )
            break
    return min(found) if found else None


def _fill_rows(fills: pd.DataFrame, result: BacktestResult) -> list[tuple]:
    bars = result.candles.index.get_indexer(fills["time"])
    return list(zip(bars.tolist(), *(fills[c].tolist() for c in _FILL_COLUMNS)))


def _describe(rows: list[tuple], i: int) -> str:
    if i >= len(rows):
        return "none"
    bar, size, price, fee, kind = rows[i]
    return f"#{i + 1} {kind} {size:+g} at {price:g} (bar {bar}, fee {fee:g})"
