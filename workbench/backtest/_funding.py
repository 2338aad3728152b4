"""Funding of perpetual positions: what each bar of a backtest settles.

A perpetual swap has no expiry; its price is held near the index by funding, paid between
longs and shorts at fixed times: every 8 hours at 00:00, 08:00 and 16:00 UTC on Binance
USDⓈ-M and Gate USDT perpetuals (both venues' contract specifications; some contracts settle
every 4 or 1 hours). With a neutral premium the rate is the interest component alone,
0.01 % per 8 hours (Binance "Introduction to Binance Futures Funding Rates": interest
0.03 % a day), which is the default here: a backtest of a perpetual position is charged
funding unless it is told ``funding=None``.

``funding`` is a rate per 8 hours (settled at those times) or a series of real rates indexed
by their settlement times (e.g. from ccxt's ``fetch_funding_rate_history``: its ``timestamp``
and ``fundingRate``). Each settlement is paid at the open of the bar whose span holds it,
on the position held into that bar, at the bar's open price (the engine's ``pay_funding``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ParameterError

DEFAULT_FUNDING = 0.0001  # per 8 hours: the interest component both venues charge at a neutral premium
INTERVAL = pd.Timedelta(hours=8)
_MOST = 0.05  # a larger rate per settlement is a data error (venues cap it far lower)


def funding_per_bar(index: pd.DatetimeIndex, bar: pd.Timedelta, funding: Any) -> np.ndarray:
    """The funding rate each bar of ``index`` settles at its open (0 where none falls in it)."""
    rates = np.zeros(len(index))
    if funding is None or len(index) == 0:
        return rates
    opens = index.as_unit("ns").asi8
    if isinstance(funding, pd.Series):
        times, values = _series(funding)
        at = np.searchsorted(opens, times, side="right") - 1
        inside = (at >= 0) & (times < opens[np.clip(at, 0, None)] + bar.value)
        np.add.at(rates, at[inside], values[inside])
        return rates
    rate = _rate(funding)
    if rate == 0.0:
        return rates
    step = INTERVAL.value
    by_close = -(-(opens + bar.value) // step)  # settlements since 1970 up to each bar's close
    by_open = -(-opens // step)  # ... and up to its open: the difference falls in the bar
    return (by_close - by_open) * rate


def describe(funding: Any) -> float | dict[str, float] | None:
    """``funding`` as JSON (what a listing stores to reproduce the backtest)."""
    if isinstance(funding, pd.Series):
        times, values = _series(funding)
        return {str(pd.Timestamp(t, tz="UTC")): float(v) for t, v in zip(times, values)}
    return None if funding is None else _rate(funding)


def from_description(stored: float | dict[str, float] | None) -> float | pd.Series | None:
    """The ``funding`` argument back from :func:`describe`."""
    if isinstance(stored, dict):
        return pd.Series(list(stored.values()), index=pd.DatetimeIndex(list(stored)), name="funding")
    return stored


def _rate(funding: Any) -> float:
    if isinstance(funding, bool) or not isinstance(funding, (int, float)) or not -_MOST <= funding <= _MOST:
        raise ParameterError(
            f"funding: {funding!r} is not allowed; expected a rate per 8 hours from {-_MOST:g} to "
            f"{_MOST:g} (0.0001 is 0.01 %), a series of rates by settlement time, or None for "
            "no funding",
            param="funding",
            value=funding,
        )
    return float(funding)


def _series(funding: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Settlement times (UTC nanoseconds, sorted) and rates of a funding series, checked."""
    if not isinstance(funding.index, pd.DatetimeIndex):
        raise ParameterError(
            f"funding: a series needs a DatetimeIndex of settlement times, got {type(funding.index).__name__}",
            param="funding",
        )
    values = pd.to_numeric(funding, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > _MOST))
    if bad.size:
        raise ParameterError(
            f"funding: the rate at {funding.index[bad[0]]} is {float(values[bad[0]])!r}; expected a "
            f"number from {-_MOST:g} to {_MOST:g} per settlement",
            param="funding",
        )
    index = funding.index.tz_localize("UTC") if funding.index.tz is None else funding.index.tz_convert("UTC")
    if index.has_duplicates:
        raise ParameterError(f"funding: settlement time {index[index.duplicated()][0]} appears twice", param="funding")
    order = np.argsort(index.as_unit("ns").asi8, kind="stable")
    return index.as_unit("ns").asi8[order], values[order]
