"""The exchange a session trades on, opened for one tick.

Paper sessions replay bundled history: their paper account lives in the database
(``PostgresPaperStore``, account ``session-<id>``) and their clock stands at the candle
being ticked, so every tick (each its own process, in production) continues where the last
one ended. ccxt sessions get their keys from ``workbench.vault.keys_for`` in memory only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from workbench.exchange import Exchange, open_exchange

if TYPE_CHECKING:  # pragma: no cover
    from workbench.exchange import ReplayClock

PAPER = "paper"
Db = Callable[[], AbstractContextManager[Any]]


@lru_cache(maxsize=4)
def _bundled(name: str) -> pd.DataFrame:
    from workbench.data import load_candles

    return load_candles(name)


def replay_candles(settings: dict[str, Any], timeframe: str) -> pd.DataFrame:
    """A paper session's history: bundled candles, resampled to ``timeframe``, cut to its range."""
    from workbench.data import resample

    candles = _bundled(settings.get("data", "btcusd_1h"))
    if timeframe != candles.attrs.get("timeframe"):
        candles = resample(candles, timeframe)
    end = settings.get("replay_end")
    if end is not None:
        candles = candles[candles.index < pd.Timestamp(end)]
    return candles


def paper_symbol(settings: dict[str, Any], market_type: str) -> str:
    symbol = _bundled(settings.get("data", "btcusd_1h")).attrs.get("symbol", "BTC/USD")
    return f"{symbol}:{symbol.split('/')[1]}" if market_type == "swap" else symbol


def open_venue(
    session_id: int,
    exchange: str,
    account_id: int | None,
    market_type: str,
    timeframe: str,
    settings: dict[str, Any],
    at: datetime | None,
    db: Db | None = None,
    since: datetime | None = None,
) -> Exchange:
    """The session's exchange, its clock at ``at`` (paper: the forming candle; ccxt: when
    given, the time to act at). A paper account is read and written through ``db`` by a
    caller holding the session's lock, which needs no order or fill older than ``since``."""
    clock: ReplayClock | dict[str, Callable[[], float]]  # paper: the replay's; ccxt: open_exchange's option
    if exchange == PAPER:
        from workbench.exchange import PostgresPaperStore, ReplayClock

        candles = replay_candles(settings, timeframe)
        clock = ReplayClock(candles, start=at if at is not None else 1)
        return open_exchange(
            PAPER,
            candles=candles,
            clock=clock,
            market_type=market_type,
            account=f"session-{session_id}",
            store=PostgresPaperStore(db, exclusive=True, since=since),
            balance=settings.get("balance", 10_000.0),
            fees=settings.get("fees", 0.001),
            slippage=settings.get("slippage", 0.0005),
        )
    from workbench import vault

    keys = vault.keys_for(cast(int, account_id))  # a ccxt session has an exchange account
    ccxt = settings.get("ccxt", {})
    clock = {} if at is None else {"clock": at.timestamp}  # a tick told when "now" is
    return open_exchange(
        exchange,
        api_key=keys.api_key,
        secret=keys.secret,
        password=keys.passphrase,
        market_type=market_type,
        urls=ccxt.get("urls"),
        config=ccxt.get("config"),
        **clock,
    )
