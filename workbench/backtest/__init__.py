"""Backtests and parameter sweeps of strategy templates on candles.

``backtest`` runs one parameter set and returns a :class:`BacktestResult`; ``sweep`` runs a
grid of them in parallel and returns a ranked table. Both run the template's compiled
kernel (numba), so a sweep row equals the backtest of that row.

This package is also callable: ``workbench.backtest(...)`` is :func:`backtest`, whether
Python's import system has bound the name to this package or to the function.
"""

import sys
import types

from workbench.backtest._result import BacktestResult
from workbench.backtest._run import backtest, sweep
from workbench.backtest._venues import MarketRules

__all__ = ["BacktestResult", "MarketRules", "backtest", "sweep"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs) -> BacktestResult:
        return backtest(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
