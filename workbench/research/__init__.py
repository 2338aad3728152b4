"""Research tools that ask whether a backtest's edge is real: is it luck of the search?

* :func:`deflated_sharpe` and :func:`probabilistic_sharpe`: the probability that a Sharpe
  ratio beats a benchmark, or the best that luck gives a search of many trials.
* :func:`monte_carlo`: the equity paths a backtest's trades (or market stretches) drawn in
  another order give: the range of drawdowns, time under water, the probability of ruin.
* :func:`walk_forward`: parameters chosen on each training window, traded on the window
  after it; the out-of-sample equity and how much of the in-sample return survived.
* :func:`cross_validate`: combinatorial purged cross-validation: the grid's choice tested on
  every combination of held-out groups, the out-of-sample Sharpe over many backtest paths,
  and the probability of backtest overfitting (PBO) of the grid.
* :func:`check_lookahead`: the strategy backtested on candles cut short at many bars; its
  fills and positions before each cut must not change, or it reads the future.
* :func:`validate`: all of them at once with written-down thresholds: a verdict, one chart,
  an HTML page and a JSON certificate (:class:`ValidationReport`).
* :func:`trials`, :func:`trial_count`, :func:`record_trials`: the tenant's trial ledger, every
  combination ever tried per strategy family and data set (walk-forward, cross-validation
  and validation record themselves; a sweep is recorded with ``record_trials``), which the
  deflated Sharpe ratio of :func:`validate` counts.
* :func:`request_certificate`, :func:`certificates`, :func:`certificate_requests`: the
  certificates the platform computes itself (a trusted worker runs :func:`validate` on the
  strategy as stored and a named data set), which real-money promotion requires.

Example::

    import workbench as wb

    table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 5)})
    best = wb.backtest("channel", candles, {"entry_window": int(table.iloc[0]["entry_window"])})
    wb.deflated_sharpe(best, trials=table["sharpe"]).passed()    # is it more than the search's luck?
    wb.monte_carlo(best, 2000, seed=1).quantiles()                # how bad could it have been?
    wb.cross_validate("channel", candles, {"entry_window": range(10, 200, 5)}).pbo  # is the best a draw?
    wb.record_trials("channel", candles, len(table))                # the sweep counts too
    wb.validate("channel", candles, {"entry_window": range(10, 200, 5)}).checks    # the whole battery
"""

from workbench.research._certify import certificate_requests, certificates, request_certificate
from workbench.research._cross_validate import CrossValidation, cross_validate
from workbench.research._lookahead import LookAhead, check_lookahead
from workbench.research._monte_carlo import MonteCarlo, monte_carlo
from workbench.research._sharpe import DeflatedSharpe, deflated_sharpe, probabilistic_sharpe
from workbench.research._trials import record_trials, trial_count, trials
from workbench.research._validate import ValidationReport, validate
from workbench.research._walk_forward import WalkForward, walk_forward

__all__ = [
    "CrossValidation",
    "DeflatedSharpe",
    "LookAhead",
    "MonteCarlo",
    "ValidationReport",
    "WalkForward",
    "certificate_requests",
    "certificates",
    "check_lookahead",
    "cross_validate",
    "deflated_sharpe",
    "monte_carlo",
    "probabilistic_sharpe",
    "record_trials",
    "request_certificate",
    "trial_count",
    "trials",
    "validate",
    "walk_forward",
]
