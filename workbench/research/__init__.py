"""Research tools that ask whether a backtest's edge is real: is it luck of the search?

* :func:`deflated_sharpe` and :func:`probabilistic_sharpe`: the probability that a Sharpe
  ratio beats a benchmark, or the best that luck gives a search of many trials.

Example::

    import workbench as wb

    table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 5)})
    best = wb.backtest("channel", candles, {"entry_window": int(table.iloc[0]["entry_window"])})
    wb.deflated_sharpe(best, trials=table["sharpe"]).passed()    # False: the search's luck
"""
from workbench.research._sharpe import DeflatedSharpe, deflated_sharpe, probabilistic_sharpe

__all__ = ["DeflatedSharpe", "deflated_sharpe", "probabilistic_sharpe"]
