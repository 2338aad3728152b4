"""workbench: research and trade crypto strategies from Jupyter.

The public API, all a notebook needs::

    import workbench as wb

    candles = wb.load_candles()                      # bundled BTC/USD hourly, Bitfinex
    result = wb.backtest("channel", candles, {"entry_window": 48, "exit_window": 24})
    result.metrics["sharpe"], result.figure          # a metrics mapping and a bokeh figure
    table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 10)})
    wb.editor("ema_reversal", candles)               # an ipywidgets form over the backtest

Heavy dependencies (vectorbt, numba, bokeh, ipywidgets, ccxt) load on first use, so
``import workbench`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports
from workbench.errors import CandleError, ParameterError, RuleError, StrategyError, TemplateError, WorkbenchError

__version__ = "0.1.0"

# public name -> "module:attribute" (or "module" for a subpackage), imported on first access (PEP 562)
_LAZY = {
    "load_candles": "workbench.data:load_candles",
    "read_candles": "workbench.data:read_candles",
    "validate_candles": "workbench.data:validate_candles",
    "fetch_candles": "workbench.data:fetch_candles",
    "fetch_funding": "workbench.data:fetch_funding",
    "resample": "workbench.data:resample",
    "templates": "workbench.strategies:templates",
    "get_template": "workbench.strategies:get_template",
    "Template": "workbench.strategies:Template",
    "backtest": "workbench.backtest:backtest",
    "sweep": "workbench.backtest:sweep",
    "BacktestResult": "workbench.backtest:BacktestResult",
    "editor": "workbench.ui:editor",
    "rule_builder": "workbench.ui:rule_builder",
    "save_strategy": "workbench.strategies:save_strategy",
    "list_strategies": "workbench.strategies:list_strategies",
    "load_strategy": "workbench.strategies:load_strategy",
    "clone_strategy": "workbench.strategies:clone_strategy",
    "delete_strategy": "workbench.strategies:delete_strategy",
    "parse_rules": "workbench.strategies.rules:parse_rules",
    "rules_text": "workbench.strategies.rules:rules_text",
    "rule_indicators": "workbench.strategies.rules:rule_indicators",
    "vault": "workbench.vault",
    "open_exchange": "workbench.exchange:open_exchange",
    "live": "workbench.live",
    "scheduler": "workbench.scheduler",
    "promote": "workbench.scheduler:promote",
    "demote": "workbench.scheduler:demote",
    "promote_button": "workbench.scheduler:promote_button",
    "dashboard": "workbench.scheduler:dashboard",
    "notify": "workbench.notify",
    "market": "workbench.market",
    "research": "workbench.research",
    "deflated_sharpe": "workbench.research:deflated_sharpe",
    "probabilistic_sharpe": "workbench.research:probabilistic_sharpe",
    "DeflatedSharpe": "workbench.research:DeflatedSharpe",
    "monte_carlo": "workbench.research:monte_carlo",
    "MonteCarlo": "workbench.research:MonteCarlo",
    "walk_forward": "workbench.research:walk_forward",
    "WalkForward": "workbench.research:WalkForward",
    "cross_validate": "workbench.research:cross_validate",
    "CrossValidation": "workbench.research:CrossValidation",
    "check_lookahead": "workbench.research:check_lookahead",
    "LookAhead": "workbench.research:LookAhead",
    "validate": "workbench.research:validate",
    "ValidationReport": "workbench.research:ValidationReport",
    "trials": "workbench.research:trials",
    "trial_count": "workbench.research:trial_count",
    "record_trials": "workbench.research:record_trials",
    "request_certificate": "workbench.research:request_certificate",
    "certificates": "workbench.research:certificates",
    "certificate_requests": "workbench.research:certificate_requests",
}

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    _LAZY,
    eager=["CandleError", "ParameterError", "RuleError", "StrategyError", "TemplateError", "WorkbenchError"],
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only (tests/test_project.py: every _LAZY name)
    from workbench import live, market, notify, research, scheduler, vault
    from workbench.backtest import BacktestResult, backtest, sweep
    from workbench.data import fetch_candles, fetch_funding, load_candles, read_candles, resample, validate_candles
    from workbench.exchange import open_exchange
    from workbench.research import (
        CrossValidation,
        DeflatedSharpe,
        LookAhead,
        MonteCarlo,
        ValidationReport,
        WalkForward,
        certificate_requests,
        certificates,
        check_lookahead,
        cross_validate,
        deflated_sharpe,
        monte_carlo,
        probabilistic_sharpe,
        record_trials,
        request_certificate,
        trial_count,
        trials,
        validate,
        walk_forward,
    )
    from workbench.scheduler import dashboard, demote, promote, promote_button
    from workbench.strategies import (
        Template,
        clone_strategy,
        delete_strategy,
        get_template,
        list_strategies,
        load_strategy,
        save_strategy,
        templates,
    )
    from workbench.strategies.rules import parse_rules, rule_indicators, rules_text
    from workbench.ui import editor, rule_builder
