"""The text form of a rule strategy: canonical JSON -> text (the parser goes the other way).

One statement per line, in this order (``rules_text`` writes exactly this; the parser also
reads statements in any order, spread over lines as you like)::

    vars fast = 12, slow = 26
    leverage 2
    buy 10% when EMA($fast) > EMA($slow) and RSI(14) < 30
        stop_loss 0.5% take_profit 1%, 2% trailing_stop 1%
    exit long when EMA($fast) crosses_below EMA($slow)
    sell 0.5 units when close < DONCHIAN(20).low
    exit short when close > DONCHIAN(10).high

Nested and/or groups are always parenthesised, so text -> JSON -> text and JSON -> text ->
JSON both give back exactly what they started from (for canonical input).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench.strategies.rules._model import INDICATORS


def number(value: Any) -> str:
    """A number as the parser reads it back to the same value and type (int or float)."""
    if isinstance(value, Mapping):
        return f"${value['var']}"
    return str(value) if isinstance(value, int) else repr(float(value))


def operand(node: Any) -> str:
    if not isinstance(node, Mapping) or "var" in node:
        return number(node)
    ind = INDICATORS[node["indicator"]]
    text = ind.name
    if ind.args:
        text += "(" + ", ".join(number(v) for v in node["params"]) + ")"
    if ind.outputs:
        text += "." + node["output"]
    return text


def condition(node: Mapping[str, Any]) -> str:
    for group in ("and", "or"):
        if group in node:
            return f" {group} ".join(_grouped(child) for child in node[group])
    if "not" in node:
        return "not " + _grouped(node["not"])
    return f"{operand(node['left'])} {node['op']} {operand(node['right'])}"


def _grouped(node: Mapping[str, Any]) -> str:
    text = condition(node)
    return f"({text})" if "and" in node or "or" in node else text


def to_text(rules: Mapping[str, Any]) -> str:
    """The canonical text of canonical rule JSON (see ``workbench.strategies.rules.normalise``)."""
    lines = []
    if rules["vars"]:
        lines.append("vars " + ", ".join(f"{name} = {number(value)}" for name, value in rules["vars"].items()))
    if rules["leverage"] != 1:
        lines.append(f"leverage {number(rules['leverage'])}")
    for side, verb in (("long", "buy"), ("short", "sell")):
        node = rules[side]
        if node is None:
            continue
        kind, amount = next(iter(node["size"].items()))
        size = f"{number(amount)}%" if kind == "percent" else f"{number(amount)} units"
        lines.append(f"{verb} {size} when {condition(node['entry'])}")
        protections = []
        if node["stop_loss"] is not None:
            protections.append(f"stop_loss {number(node['stop_loss'])}%")
        if node["take_profit"]:
            protections.append("take_profit " + ", ".join(f"{number(v)}%" for v in node["take_profit"]))
        if node["trailing_stop"] is not None:
            protections.append(f"trailing_stop {number(node['trailing_stop'])}%")
        if protections:
            lines.append("    " + " ".join(protections))
        if node["exit"] is not None:
            lines.append(f"exit {side} when {condition(node['exit'])}")
    return "\n".join(lines) + "\n"
