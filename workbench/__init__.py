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

import importlib
from typing import TYPE_CHECKING, Any

from workbench.errors import CandleError, ParameterError, StrategyError, TemplateError, WorkbenchError

__version__ = "0.1.0"

# public name -> "module:attribute" (or "module" for a subpackage), imported on first access (PEP 562)
_LAZY = {
    "load_candles": "workbench.data:load_candles",
    "read_candles": "workbench.data:read_candles",
    "validate_candles": "workbench.data:validate_candles",
    "fetch_candles": "workbench.data:fetch_candles",
    "resample": "workbench.data:resample",
    "templates": "workbench.strategies:templates",
    "get_template": "workbench.strategies:get_template",
    "Template": "workbench.strategies:Template",
    "backtest": "workbench.backtest:backtest",
    "sweep": "workbench.backtest:sweep",
    "BacktestResult": "workbench.backtest:BacktestResult",
    "editor": "workbench.ui:editor",
    "save_strategy": "workbench.strategies:save_strategy",
    "list_strategies": "workbench.strategies:list_strategies",
    "load_strategy": "workbench.strategies:load_strategy",
    "clone_strategy": "workbench.strategies:clone_strategy",
    "delete_strategy": "workbench.strategies:delete_strategy",
    "vault": "workbench.vault",
    "open_exchange": "workbench.exchange:open_exchange",
    "live": "workbench.live",
    "scheduler": "workbench.scheduler",
    "promote": "workbench.scheduler:promote",
    "demote": "workbench.scheduler:demote",
    "promote_button": "workbench.scheduler:promote_button",
    "dashboard": "workbench.scheduler:dashboard",
}

__all__ = sorted([*_LAZY, "CandleError", "ParameterError", "StrategyError", "TemplateError", "WorkbenchError"])

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.backtest import BacktestResult, backtest, sweep
    from workbench.data import fetch_candles, load_candles, read_candles, resample, validate_candles
    from workbench.strategies import (Template, clone_strategy, delete_strategy, get_template, list_strategies,
                                      load_strategy, save_strategy, templates)
    from workbench.ui import editor


def __getattr__(name: str) -> Any:
    try:
        module, _, attribute = _LAZY[name].partition(":")
    except KeyError:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
