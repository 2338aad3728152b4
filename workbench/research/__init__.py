"""Research tools that ask whether a backtest's edge is real: is it luck of the search?

* :func:`deflated_sharpe` and :func:`probabilistic_sharpe`: the probability that a Sharpe
  ratio beats a benchmark, or the best that luck gives a search of many trials.
* :func:`monte_carlo`: the equity paths a backtest's trades (or market stretches) drawn in
  another order give: the range of drawdowns, time under water, the probability of ruin.
* :func:`walk_forward`: parameters chosen on each training window, traded on the window
  after it; the out-of-sample equity and how much of the in-sample return survived.

Example::

    import workbench as wb

    table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 5)})
    best = wb.backtest("channel", candles, {"entry_window": int(table.iloc[0]["entry_window"])})
    wb.deflated_sharpe(best, trials=table["sharpe"]).passed()    # is it more than the search's luck?
    wb.monte_carlo(best, 2000, seed=1).quantiles()                # how bad could it have been?
"""
from workbench.research._monte_carlo import MonteCarlo, monte_carlo
from workbench.research._sharpe import DeflatedSharpe, deflated_sharpe, probabilistic_sharpe
from workbench.research._walk_forward import WalkForward, walk_forward

__all__ = ["DeflatedSharpe", "MonteCarlo", "WalkForward", "deflated_sharpe", "monte_carlo", "probabilistic_sharpe",
           "walk_forward"]
