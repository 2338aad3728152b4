"""Aggregate tidy candles into a coarser timeframe."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data._calendar import DEFAULT_CALENDAR, get_calendar
from workbench.data._timeframe import format_timeframe, infer_timeframe, parse_timeframe
from workbench.errors import CandleError

_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
_WEEK = pd.Timedelta(days=7)
# Exchanges start weekly candles on Monday; 1970-01-01 was a Thursday.
_MONDAY = pd.Timestamp("1970-01-05", tz="UTC")
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def resample_candles(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``candles`` (tidy, without missing candles) aggregated into complete ``timeframe`` buckets.

    Inside the series every bucket holding a candle is whole, as validation found no candle
    missing; the first and last are whole when the calendar expects no candle of theirs
    before the first candle or after the last.
    """
    source_name = candles.attrs.get("timeframe") or infer_timeframe(candles.index)
    source, target = parse_timeframe(source_name), parse_timeframe(timeframe)
    if target < source:
        raise CandleError(
            f"cannot resample {source_name} candles to the finer timeframe {timeframe}: "
            "finer candles need finer data (fetch_candles(..., timeframe=...))"
        )
    if target % source:
        raise CandleError(
            f"cannot resample {source_name} candles to {timeframe}: "
            f"{timeframe} is not a whole number of {source_name} candles"
        )
    origin = _MONDAY if target % _WEEK == pd.Timedelta(0) else _EPOCH
    buckets = candles.resample(target, origin=origin, label="left", closed="left")
    result = buckets.agg(_AGGREGATION)[list(_AGGREGATION)].astype("float64")
    result = result[(buckets["close"].count() > 0).to_numpy()]
    if len(result):
        first, last = candles.index[0].value, candles.index[-1].value
        hours = get_calendar(candles.attrs.get("calendar", DEFAULT_CALENDAR)).open_hours(
            result.index[0], result.index[-1] + target
        )
        bar = source.value
        before = first - bar * np.arange(1, (first - result.index[0].value) // bar + 1)
        after = last + bar * np.arange(1, (result.index[-1].value + target.value - last - 1) // bar + 1)
        whole = np.ones(len(result), dtype=bool)
        whole[0] &= not hours.expected(before, bar).any()
        whole[-1] &= not hours.expected(after, bar).any()
        result = result[whole]
    result.index.name = "time"
    result.attrs = {**candles.attrs, "timeframe": format_timeframe(target)}
    return result
