"""Notebook widgets: the generated parameter editor over a live backtest, and the visual rule builder."""

from workbench.ui._editor import StrategyEditor, editor
from workbench.ui._rules_builder import RuleBuilder, rule_builder

__all__ = ["RuleBuilder", "StrategyEditor", "editor", "rule_builder"]
