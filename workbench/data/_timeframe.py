"""ccxt-style timeframe strings ("1m", "4h", "1d", "1w") to and from durations.

Kept here rather than borrowed from ccxt so that reading a CSV never imports ccxt.
"""

from __future__ import annotations

import re

import pandas as pd

from workbench.errors import CandleError

_UNITS = {"s": "1s", "m": "1min", "h": "1h", "d": "1D", "w": "7D"}
_PATTERN = re.compile(r"(\d+)([smhdw])")


def parse_timeframe(timeframe: str) -> pd.Timedelta:
    """The duration of one candle of ``timeframe``; monthly candles are refused (irregular)."""
    match = _PATTERN.fullmatch(str(timeframe).strip())
    if match is None or int(match.group(1)) == 0:
        hint = " (monthly candles have no fixed length)" if str(timeframe).endswith("M") else ""
        raise CandleError(
            f"timeframe {timeframe!r} is not understood{hint}; use a count and a unit, "
            "e.g. '1m', '5m', '15m', '1h', '4h', '1d', '1w'"
        )
    return int(match.group(1)) * pd.Timedelta(_UNITS[match.group(2)])


def format_timeframe(duration: pd.Timedelta) -> str:
    """The ccxt-style name of a candle duration, in the largest unit that divides it."""
    seconds = int(duration.total_seconds())
    if seconds <= 0 or pd.Timedelta(seconds=seconds) != duration:
        raise CandleError(f"candles {duration} apart do not make a timeframe of whole seconds")
    units = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    unit, size = next((unit, size) for unit, size in units if seconds % size == 0)
    return f"{seconds // size}{unit}"


def infer_timeframe(times: pd.DatetimeIndex) -> str:
    """The most common spacing of sorted, unique candle times (gaps do not change it)."""
    steps = pd.Series(times.sort_values().unique()).diff().dropna()
    if steps.empty:
        raise CandleError(f"cannot infer the timeframe from {len(times)} candle(s); pass timeframe='1h' or similar")
    counts = steps.value_counts()
    return format_timeframe(counts[counts == counts.max()].index.min())
