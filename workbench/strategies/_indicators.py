"""Indicators the template kernels read, each a float64 array aligned with the candles.

Every indicator value at bar ``t`` uses only bars before ``t`` (or ``t`` itself, for values
known at its close), so a kernel can never look ahead. A sweep computes each distinct
(indicator, window) once and shares it across every parameter combination that uses it.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

IndicatorKey = tuple[str, int]


@njit(cache=True)
def _rolling_extreme_before(values, window, want_max):
    """Max (or min) of ``values[t-window:t]``: the window *before* bar t; NaN until full."""
    n = values.shape[0]
    out = np.full(n, np.nan)
    queue = np.empty(n, np.int64)  # indices of a monotonic deque
    head = 0
    tail = 0
    for t in range(n):
        if t >= window:
            out[t] = values[queue[head]]
        # push bar t so it is in the window of bars t+1..t+window
        v = values[t]
        while tail > head and ((values[queue[tail - 1]] <= v) if want_max else (values[queue[tail - 1]] >= v)):
            tail -= 1
        queue[tail] = t
        tail += 1
        if queue[head] <= t - window:
            head += 1
    return out


@njit(cache=True)
def _ema(values, span):
    """Exponential moving average with alpha = 2/(span+1), seeded with the first close.

    The same recursion as pandas' ``ewm(span=span, adjust=False).mean()``, NaN for the
    first span-1 bars (warm-up); the value at bar t is known at the close of bar t.
    """
    alpha = 2.0 / (span + 1.0)
    out = np.empty(values.shape[0])
    value = values[0]
    for t in range(values.shape[0]):
        value = alpha * values[t] + (1.0 - alpha) * value if t > 0 else value
        out[t] = value if t >= span - 1 else np.nan
    return out


def _high_max(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _rolling_extreme_before(candles["high"], window, True)


def _low_min(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _rolling_extreme_before(candles["low"], window, False)


def _close_ema(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _ema(candles["close"], window)


def _close(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return candles["close"]


def _unused(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    """A band a kernel does not read in this configuration: NaN never triggers a signal."""
    return np.full(candles["close"].shape[0], np.nan)


INDICATORS: dict[str, Callable[[dict[str, np.ndarray], int], np.ndarray]] = {
    "high_max": _high_max,
    "low_min": _low_min,
    "ema": _close_ema,
    "close": _close,
    "unused": _unused,
}


def compute(key: IndicatorKey, candles: dict[str, np.ndarray]) -> np.ndarray:
    name, window = key
    return INDICATORS[name](candles, window)


def stack(keys: list[IndicatorKey], candles: dict[str, np.ndarray]) -> np.ndarray:
    """The indicators for ``keys`` as rows of one C-contiguous 2-D array."""
    out = np.empty((len(keys), candles["close"].shape[0]))
    for row, key in enumerate(keys):
        out[row] = compute(key, candles)
    return out
