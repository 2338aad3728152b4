"""The replay clock: a paper exchange's "now", walking candle history one bar at a time."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from workbench.errors import ExchangeError


class ReplayClock:
    """Its "now" is the open time of bar ``index`` of ``candles``: bars before it are closed, that
    bar is forming (its open is the price market orders fill at). ``advance()`` closes it.

    ``start`` is the first "now": a bar position (default 1, one closed candle) or a time.
    """

    def __init__(self, candles: pd.DataFrame, start: int | datetime | str = 1) -> None:
        self.times = candles.index
        if len(self.times) < 2:
            raise ExchangeError("a replay clock needs at least two candles")
        self.index = start if isinstance(start, int) else int(self.times.searchsorted(pd.Timestamp(start)))
        if not 0 < self.index <= len(self.times):
            raise ExchangeError(f"replay start {start!r} is outside the candles ({self.times[0]} to {self.times[-1]})")
        self.step = self.times[1] - self.times[0]

    @property
    def now(self) -> datetime:
        """The current time; after the last bar, that bar's close."""
        if self.index < len(self.times):
            return self.times[self.index].to_pydatetime()
        return (self.times[-1] + self.step).to_pydatetime()

    @property
    def finished(self) -> bool:
        """True once the last bar has closed: there is no price to trade at any more."""
        return self.index >= len(self.times)

    def advance(self, bars: int = 1) -> datetime:
        """Close ``bars`` more bars (as fast as the caller likes); the new "now"."""
        if self.finished:
            raise ExchangeError(f"the replay has ended: the last candle ({self.times[-1]}) has closed")
        self.index = min(self.index + bars, len(self.times))
        return self.now

    def __repr__(self) -> str:
        return f"ReplayClock(now={self.now.isoformat()}, bar {self.index} of {len(self.times)})"
