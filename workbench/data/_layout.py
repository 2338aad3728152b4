"""Recognise the column layout of candle tables: which column is the time, the prices, the volume.

One place maps the layouts people download (Bitfinex/CryptoDataDownload, exchange dumps,
pandas' own ``to_csv`` of a tidy frame) onto the five tidy columns, so CSV files and
in-memory frames go through the same rules.
"""

from __future__ import annotations

from typing import cast

import pandas as pd

from workbench.errors import CandleError

COLUMNS = ("open", "high", "low", "close", "volume")

# tidy name -> accepted spellings (compared lower-cased, spaces and underscores ignored), by
# priority. Bitfinex files carry VolumeFrom (base asset, BTC) and VolumeTo (quote, USD): the
# tidy volume is always the base-asset volume, so VolumeTo is deliberately not an alias.
_ALIASES = {
    "time": ("time", "timestamp", "datetime", "date", "opentime", "unix"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "volumefrom", "vol", "basevolume"),
}
_SYMBOL = ("symbol", "pair", "market")


def _key(name: object) -> str:
    return str(name).lower().replace(" ", "").replace("_", "")


def _find(columns: pd.Index, aliases: tuple[str, ...]) -> object | None:
    """The first column (in alias priority) whose name matches one of ``aliases``."""
    by_key: dict[str, object] = {}
    for column in columns:
        by_key.setdefault(_key(column), column)
    return next((by_key[a] for a in aliases if a in by_key), None)


def candle_table(raw: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str | None]:
    """``raw`` as columns time, open, high, low, close, volume (values still unparsed), and its symbol.

    A DatetimeIndex serves as the time column when no time column exists. A ``symbol``
    column must hold a single symbol: mixing markets in one series would be silently wrong.
    """
    found = {tidy: _find(raw.columns, aliases) for tidy, aliases in _ALIASES.items()}
    times = raw[found["time"]] if found["time"] is not None else None
    if times is None and isinstance(raw.index, pd.DatetimeIndex):
        times = pd.Series(raw.index)
    missing = [tidy for tidy, column in found.items() if column is None and tidy != "time"]
    if times is None:
        missing.insert(0, "time")
    if missing:
        raise CandleError(
            f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, raw.columns))}. "
            "Expected a time column (time, timestamp, datetime, date or unix) and open, high, low, "
            "close, volume (any case; Bitfinex's VolumeFrom counts as volume)"
        )
    table = pd.DataFrame({"time": cast(pd.Series, times).reset_index(drop=True)})  # found, else raised above
    for tidy in COLUMNS:
        table[tidy] = raw[found[tidy]].reset_index(drop=True)
    symbol_column = _find(raw.columns, _SYMBOL)
    symbol = None
    if symbol_column is not None:
        symbols = raw[symbol_column].dropna().unique()
        if len(symbols) > 1:
            shown = ", ".join(map(str, symbols[:5]))
            raise CandleError(
                f"{source}: column {symbol_column} holds {len(symbols)} symbols ({shown}); "
                "one candle series is one market, so split the file by symbol first"
            )
        symbol = str(symbols[0]) if len(symbols) else None
    return table, symbol
