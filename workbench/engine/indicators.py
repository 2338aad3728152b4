"""Indicators the template kernels read, each a float64 array aligned with the candles.

Every indicator value at bar ``t`` uses only bars before ``t`` (or ``t`` itself, for values
known at its close), so a kernel can never look ahead. A key is a tuple ``(name, *args)``,
e.g. ``("ema", 12)`` or ``("macd", 12, 26, 9, "signal")``; a sweep computes each distinct
key once and shares it across every parameter combination that uses it, and keys built from
other keys (a rule's signal rows) reuse them through the same cache.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

IndicatorKey = tuple  # (name, *args): hashable, e.g. ("high_max", 48)


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


@njit(cache=True, nogil=True)
def _neumaier(total, carry, term):
    """``total + term`` and the rounding it lost added to ``carry`` (Neumaier's compensated sum)."""
    result = total + term
    if abs(total) >= abs(term):
        carry += (total - result) + term
    else:
        carry += (term - result) + total
    return result, carry


@njit(cache=True, nogil=True)
def _rolling_mean_std(values, window):
    """Mean and population standard deviation of ``values[t-window+1:t+1]``; NaN until full.

    O(n): running sums of each value's distance from an anchor, re-summed from scratch with
    the window's mean as the new anchor every ``window`` bars, so rounding cannot drift and
    the squares do not cancel (prices near 1e8 moving by cents); the distances are summed
    with Neumaier's compensation, which keeps the mean within about an ulp. A window of equal values
    gives exactly that value and 0, as in pandas: a rule like ``close > SMA(20)`` on flat
    bars must not be decided by the last bit of a sum (twenty 0.1s add up to 2.0000000000000004).
    """
    n = values.shape[0]
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    anchor = 0.0
    deviations = 0.0  # sum of (value - anchor) over the window ...
    carry = 0.0  # ... and the rounding that sum lost
    squares = 0.0  # sum of (value - anchor) ** 2 over the window
    equal = 0  # values equal to values[t] in a row, ending at t
    for t in range(n):
        equal = equal + 1 if t > 0 and values[t] == values[t - 1] else 1
        if t < window - 1:
            continue
        if (t - window + 1) % window == 0:
            total = 0.0
            for k in range(t - window + 1, t + 1):
                total += values[k]
            anchor = total / window
            deviations = carry = squares = 0.0
            for k in range(t - window + 1, t + 1):
                deviations, carry = _neumaier(deviations, carry, values[k] - anchor)
                squares += (values[k] - anchor) ** 2
        else:
            entering = values[t] - anchor
            leaving = values[t - window] - anchor
            deviations, carry = _neumaier(deviations, carry, entering)
            deviations, carry = _neumaier(deviations, carry, -leaving)
            squares += entering * entering - leaving * leaving
        if equal >= window:
            mean[t] = values[t]
            std[t] = 0.0
        else:
            offset = (deviations + carry) / window
            mean[t] = anchor + offset
            std[t] = np.sqrt(max(squares / window - offset * offset, 0.0))
    return mean, std


@njit(cache=True, nogil=True)
def _wilder(values, window):
    """Wilder's smoothing of ``values[1:]``: the mean of bars 1..window at bar ``window``, then
    ``(previous * (window - 1) + value) / window``; NaN before (bar 0 has no change)."""
    n = values.shape[0]
    out = np.full(n, np.nan)
    if n <= window:
        return out
    total = 0.0
    for t in range(1, window + 1):
        total += values[t]
    value = total / window
    out[window] = value
    for t in range(window + 1, n):
        value = (value * (window - 1) + values[t]) / window
        out[t] = value
    return out


def _high_max(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _rolling_extreme_before(candles["high"], window, True)


def _low_min(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _rolling_extreme_before(candles["low"], window, False)


def _close_ema(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _ema(candles["close"], window)


def _close(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return candles["close"]


def _price(candles: dict[str, np.ndarray], field: str) -> np.ndarray:
    """A candle field as it is: open, high, low, close or volume."""
    return candles[field]


def _sma(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    return _rolling_mean_std(candles["close"], window)[0]


def _bollinger(candles: dict[str, np.ndarray], window: int, width: float, output: str) -> np.ndarray:
    """Bollinger bands: the SMA of the close -/+ ``width`` population standard deviations."""
    mean, std = _rolling_mean_std(candles["close"], window)
    return {"upper": mean + width * std, "middle": mean, "lower": mean - width * std}[output]


def _rsi(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    """Wilder's RSI: 100 * avg_gain / (avg_gain + avg_loss), 50 when the price did not move."""
    change = np.diff(candles["close"], prepend=np.nan)
    gain = _wilder(np.where(change > 0.0, change, 0.0), window)
    loss = _wilder(np.where(change < 0.0, -change, 0.0), window)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 50.0))


def _atr(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    """Wilder's average true range; the true range of bar t needs the close of bar t-1."""
    high, low, close = candles["high"], candles["low"], candles["close"]
    previous = np.concatenate(([np.nan], close[:-1]))
    true_range = np.maximum(high - low, np.maximum(np.abs(high - previous), np.abs(low - previous)))
    return _wilder(true_range, window)


def _macd(candles: Cache, fast: int, slow: int, signal: int, output: str) -> np.ndarray:
    """MACD line = EMA(fast) - EMA(slow) of the close; signal = EMA(signal) of the line, seeded
    with its first value; hist = line - signal. Reads its parts from the cache."""
    if output == "line":
        return candles[("ema", fast)] - candles[("ema", slow)]
    line = candles[("macd", fast, slow, signal, "line")]
    if output == "hist":
        return line - candles[("macd", fast, slow, signal, "signal")]
    start = max(fast, slow) - 1
    smooth = np.full(line.shape[0], np.nan)
    if start < line.shape[0]:
        smooth[start:] = _ema(np.ascontiguousarray(line[start:]), signal)
    return smooth


def _unused(candles: dict[str, np.ndarray], window: int) -> np.ndarray:
    """A band a kernel does not read in this configuration: NaN never triggers a signal."""
    return np.full(candles["close"].shape[0], np.nan)


INDICATORS: dict[str, Callable[..., np.ndarray]] = {
    "high_max": _high_max,
    "low_min": _low_min,
    "ema": _close_ema,
    "close": _close,
    "unused": _unused,
    "price": _price,
    "sma": _sma,
    "bb": _bollinger,
    "rsi": _rsi,
    "atr": _atr,
    "macd": _macd,
}

#: bars of history a key needs before its values settle (default: its first argument, the window)
LOOKBACK: dict[str, Callable[..., int]] = {
    "price": lambda field: 0,
    "rsi": lambda window: window + 1,
    "atr": lambda window: window + 1,
    "macd": lambda fast, slow, signal, output: max(fast, slow) + signal,
}


def lookback(key: IndicatorKey) -> int:
    """How many bars before a value ``key`` needs (the live warm-up asks for a multiple of it)."""
    name, *args = key
    return int(LOOKBACK[name](*args)) if name in LOOKBACK else int(args[0])


class Cache(dict):
    """The candle arrays plus every indicator computed so far, by key: ``cache[key]`` computes
    a missing key once (an indicator built from others, like a rule's signal, reads them here)."""

    def __missing__(self, key: IndicatorKey) -> np.ndarray:
        name, *args = key
        value = self[key] = INDICATORS[name](self, *args)
        return value


def compute(key: IndicatorKey, candles: dict[str, np.ndarray]) -> np.ndarray:
    return Cache(candles)[key]


def stack(keys: list[IndicatorKey], candles: dict[str, np.ndarray]) -> np.ndarray:
    """The indicators for ``keys`` as rows of one C-contiguous 2-D array.

    Rows are computed on as many threads as numba uses (the compiled indicators release
    the GIL): a sweep's indicators take about half the time on two cores.
    """
    out = np.empty((len(keys), candles["close"].shape[0]))
    cache = Cache(candles)  # shared: rows built from other keys compute each part once

    def fill(row: int) -> None:
        out[row] = cache[keys[row]]
        cache.pop(keys[row], None)  # the row lives on in ``out``; the parts rows share stay cached

    threads = min(numba.get_num_threads(), len(keys))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fill, range(len(keys))))
    else:
        for row in range(len(keys)):
            fill(row)
    return out
