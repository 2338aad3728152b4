"""Conditions -> signal rows: each condition is evaluated once over all bars with numpy.

A signal row is an indicator like any other, keyed ``("rule", tree)`` (``_model.tree``), so a
sweep computes each distinct condition once, and each indicator it reads once, through the
shared indicator cache. The kernel reads 1.0 (the condition holds at the bar's close) or
0.0.

Logic is three-valued: a comparison with an indicator still warming up (NaN) is *unknown*,
``not`` unknown is unknown, ``and`` is false if any part is false, ``or`` true if any part is
true; a signal fires only where its condition is known to be true.
"""

from __future__ import annotations

import numpy as np

from workbench.engine import indicators

_ORDER = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}
_NEGATION = {">": "<=", "<": ">=", ">=": "<", "<=": ">"}


def _series(operand, cache: indicators.Cache, n: int) -> np.ndarray:
    if isinstance(operand, tuple):
        return cache[operand]
    return np.full(n, operand)


def _truth(node: tuple, cache: indicators.Cache, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(known true, known false) boolean masks of a condition tree at every bar's close."""
    head = node[0]
    if head == "not":
        true, false = _truth(node[1], cache, n)
        return false, true
    if head in ("and", "or"):
        parts = [_truth(child, cache, n) for child in node[1:]]
        trues, falses = [p[0] for p in parts], [p[1] for p in parts]
        if head == "and":
            return np.logical_and.reduce(trues), np.logical_or.reduce(falses)
        return np.logical_or.reduce(trues), np.logical_and.reduce(falses)
    left, right = _series(node[1], cache, n), _series(node[2], cache, n)
    with np.errstate(invalid="ignore"):
        if head in _ORDER:  # NaN compares False both ways: unknown
            return _ORDER[head](left, right), _ORDER[_NEGATION[head]](left, right)
        above = left > right if head == "crosses_above" else left < right
        before = np.zeros(n, bool)  # the other side (or equal) at the previous close
        before[1:] = left[:-1] <= right[:-1] if head == "crosses_above" else left[:-1] >= right[:-1]
        known = ~(np.isnan(left) | np.isnan(right))
        known[1:] &= ~(np.isnan(left[:-1]) | np.isnan(right[:-1]))
        known[0] = False
    true = above & before & known
    return true, known & ~true


def _signal(cache: indicators.Cache, tree: tuple) -> np.ndarray:
    n = cache["close"].shape[0]
    return _truth(tree, cache, n)[0].astype(np.float64)


def _lookback(tree: tuple) -> int:
    if tree[0] == "not":
        return _lookback(tree[1])
    if tree[0] in ("and", "or"):
        return max(_lookback(child) for child in tree[1:])
    crosses = 1 if tree[0].startswith("crosses") else 0
    return crosses + max((indicators.lookback(side) for side in tree[1:] if isinstance(side, tuple)), default=0)


indicators.INDICATORS["rule"] = _signal
indicators.LOOKBACK["rule"] = _lookback
