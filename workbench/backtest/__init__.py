"""Backtests and parameter sweeps of strategy templates on candles.

``backtest`` runs one parameter set and returns a :class:`BacktestResult`; ``sweep`` runs a
grid of them in parallel and returns a ranked table. Both run the template's compiled
kernel (numba), so a sweep row equals the backtest of that row.
"""
from workbench.backtest._result import BacktestResult
from workbench.backtest._run import backtest, sweep

__all__ = ["BacktestResult", "backtest", "sweep"]
