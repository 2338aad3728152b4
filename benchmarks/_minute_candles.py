"""One year of synthetic 1-minute BTC/USD candles, deterministic, shaped by the real hourly series.

The machine has no real minute data, so the benchmark builds it: for every hour of 2018
in the bundled Bitfinex hourly series (``workbench.load_candles()``), 60 one-minute log
returns are drawn as a Brownian bridge that ends exactly on that hour's real close, with
the per-minute volatility of that hour taken from its real high/low range (Parkinson's
estimator, divided by sqrt(60)). So the minute path keeps the real year's trends and
volatility clustering, and the hourly closes are the real ones; the minutes in between
are random. Each minute opens at the previous close; its high and low are the extremes
of a Brownian bridge from open to close inside the minute (sampled exactly from their
distribution), so high >= max(open, close), low <= min(open, close), and prices stay
positive (everything is exp of a log price). Volume spreads the real hourly volume over
its minutes with log-normal noise. The result passes ``workbench.validate_candles``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import workbench as wb

MINUTES_PER_HOUR = 60
YEAR = "2018"  # 365 days: 8,760 hours, 525,600 minutes, all inside the bundled series
SEED = 20180101
_MIN_SIGMA = 1e-5  # per-minute volatility floor: flat (no-trade) hours still move a little


def minute_candles(seed: int = SEED) -> pd.DataFrame:
    """525,600 validated 1-minute candles for 2018 (UTC), the same for the same seed."""
    hourly = wb.load_candles()
    start = pd.Timestamp(f"{YEAR}-01-01", tz="UTC")
    prev_close = float(hourly["close"][hourly.index < start].iloc[-1])
    hours = hourly.loc[YEAR]
    rng = np.random.default_rng(seed)
    n_hours = len(hours)

    # per-minute volatility of each hour, from the hour's real range
    log_range = np.log(hours["high"].to_numpy() / hours["low"].to_numpy())
    sigma_hour = log_range / np.sqrt(4.0 * np.log(2.0))
    sigma = np.maximum(sigma_hour / np.sqrt(MINUTES_PER_HOUR), _MIN_SIGMA)  # (n_hours,)

    # Brownian bridge in log price from the previous hour's close to this hour's real close
    closes = np.concatenate([[prev_close], hours["close"].to_numpy()])
    hour_return = np.diff(np.log(closes))  # (n_hours,)
    steps = rng.standard_normal((n_hours, MINUTES_PER_HOUR)) * sigma[:, None]
    walk = np.cumsum(steps, axis=1)
    frac = np.arange(1, MINUTES_PER_HOUR + 1) / MINUTES_PER_HOUR
    walk += frac[None, :] * (hour_return - walk[:, -1])[:, None]
    log_close = (np.log(closes[:-1])[:, None] + walk).ravel()
    log_open = np.concatenate([[np.log(prev_close)], log_close[:-1]])

    # extremes inside each minute: the max/min of a Brownian bridge from 0 to r with variance
    # sigma^2 is (r + sqrt(r^2 - 2 sigma^2 ln U)) / 2 (resp. (r - sqrt(...)) / 2), U ~ U(0, 1]
    r = log_close - log_open
    s2 = np.repeat(sigma, MINUTES_PER_HOUR) ** 2
    up = (r + np.sqrt(r * r - 2.0 * s2 * np.log1p(-rng.random(r.size)))) / 2.0
    down = (r - np.sqrt(r * r - 2.0 * s2 * np.log1p(-rng.random(r.size)))) / 2.0

    close = np.exp(log_close)
    open_ = np.concatenate([[prev_close], close[:-1]])  # exactly the previous close
    # the max(...) only absorbs the last-ulp rounding of exp: up >= max(r, 0) already
    high = np.maximum(np.exp(log_open + up), np.maximum(open_, close))
    low = np.minimum(np.exp(log_open + down), np.minimum(open_, close))
    volume = np.repeat(hours["volume"].to_numpy() / MINUTES_PER_HOUR, MINUTES_PER_HOUR) * rng.lognormal(
        0.0, 0.5, r.size
    )
    index = pd.date_range(start, periods=r.size, freq="1min", name="time")
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    frame.attrs.update(
        timeframe="1m",
        symbol="BTC/USD",
        source=f"synthetic 1m, Brownian bridge over real Bitfinex 2018 hourly closes, seed {seed}",
    )
    return wb.validate_candles(frame, timeframe="1m")
