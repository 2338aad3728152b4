"""Notebook widgets: the generated parameter editor over a live backtest."""
from workbench.ui._editor import StrategyEditor, editor

__all__ = ["StrategyEditor", "editor"]
