"""Aggregate tidy candles into a coarser timeframe."""
from __future__ import annotations

import pandas as pd

from workbench.data._timeframe import format_timeframe, infer_timeframe, parse_timeframe
from workbench.errors import CandleError

_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
_WEEK = pd.Timedelta(days=7)
# Exchanges start weekly candles on Monday; 1970-01-01 was a Thursday.
_MONDAY = pd.Timestamp("1970-01-05", tz="UTC")
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def resample_candles(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``candles`` (tidy, gap-free) aggregated into complete ``timeframe`` buckets."""
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
    complete = buckets["close"].count() == target // source
    result = result[complete]
    result.index.name = "time"
    result.attrs = {**candles.attrs, "timeframe": format_timeframe(target)}
    return result
