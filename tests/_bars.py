"""Hand-made candle series for tests whose right answer can be worked out on paper."""

from __future__ import annotations

import pandas as pd


def bars(rows: list[tuple[float, float, float, float]], start: str = "2024-01-01", freq: str = "1h") -> pd.DataFrame:
    """A tidy candle frame from (open, high, low, close) rows, volume 1."""
    index = pd.date_range(start, periods=len(rows), freq=freq, tz="UTC", name="time")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index, dtype="float64")
    frame["volume"] = 1.0
    return frame


FREE = {"fees": 0.0, "slippage": 0.0, "init_cash": 1000.0}  # no costs: prices are what you read
