"""The bar returns a backtest's metrics are measured on, shared by the research tools."""

from __future__ import annotations

import numpy as np

from workbench.backtest import BacktestResult


def bar_returns(result: BacktestResult) -> np.ndarray:
    """Simple returns of the equity, bar over bar, the first bar against ``init_cash``
    (``docs/METRICS.md``); a bar after the account was wiped out returns 0."""
    equity = result.equity.to_numpy(np.float64)
    previous = np.concatenate(([result.settings["init_cash"]], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(previous > 0, equity / previous - 1.0, 0.0)
    return returns


def bars_per_year(result: BacktestResult) -> float:
    """The bars a year of the result's market holds, as its Sharpe is annualised over."""
    from workbench.data import bars_per_year as calendar_bars

    return float(calendar_bars(result.candles))


def risk_free_per_bar(result: BacktestResult) -> float:
    """The annual ``risk_free`` rate of the backtest compounded down to one bar."""
    return (1.0 + result.settings.get("risk_free", 0.0)) ** (1.0 / bars_per_year(result)) - 1.0
