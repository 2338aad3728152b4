"""Indicators the template kernels read, each a float64 array aligned with the candles.

Every indicator value at bar ``t`` uses only bars before ``t`` (or ``t`` itself, for values
known at its close), so a kernel can never look ahead. A sweep computes each distinct
(indicator, window) once and shares it across every parameter combination that uses it.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

IndicatorKey = tuple[str, int]


@njit(cache=True, nogil=True)
def _rolling_extreme_before(values, window, want_max):
    """Max (or min) of ``values[t-window:t]``: the window *before* bar t; NaN until full.

    van Herk / Gil-Werman: cut the series into blocks of ``window`` bars; any window spans
    the tail of one block and the head of the next, so its extreme is the larger of a
    running extreme from the block's end backwards and one from the next block's start
    forwards. Three comparisons per bar whatever the window, without branches to mispredict.
    """
    n = values.shape[0]
    out = np.full(n, np.nan)
    if window > n - 1 or window < 1:
        return out
    sign = 1.0 if want_max else -1.0
    forward = np.empty(n)  # extreme from the start of the block to i
    backward = np.empty(n)  # extreme from i to the end of the block
    for start in range(0, n, window):
        end = min(start + window, n)
        running = sign * values[start]
        for i in range(start, end):
            v = sign * values[i]
            running = v if v > running else running
            forward[i] = running
        running = sign * values[end - 1]
        for i in range(end - 1, start - 1, -1):
            v = sign * values[i]
            running = v if v > running else running
            backward[i] = running
    for t in range(window, n):
        a, b = backward[t - window], forward[t - 1]
        out[t] = sign * (a if a > b else b)
    return out


@njit(cache=True, nogil=True)
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
    """The indicators for ``keys`` as rows of one C-contiguous 2-D array.

    Rows are computed on as many threads as numba uses (the compiled indicators release
    the GIL): a sweep's indicators take about half the time on two cores.
    """
    out = np.empty((len(keys), candles["close"].shape[0]))

    def fill(row: int) -> None:
        out[row] = compute(keys[row], candles)

    threads = min(numba.get_num_threads(), len(keys))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fill, range(len(keys))))
    else:
        for row in range(len(keys)):
            fill(row)
    return out
