"""Candles: the bundled sample, any OHLCV CSV, any ccxt exchange (cached), and resampling.

Every function returns the *tidy candle frame* the rest of the workbench relies on:

- index: a UTC ``DatetimeIndex`` named ``time`` holding candle OPEN times, ascending,
  without duplicates or gaps for the timeframe (gaps where the market is closed are not
  gaps: see calendars below);
- columns: exactly ``open, high, low, close, volume`` (float64; volume in the base asset);
- ``frame.attrs``: ``"timeframe"`` (ccxt style: "1m", "5m", "1h", "4h", "1d"...),
  ``"calendar"`` ("24/7" unless declared), plus ``"symbol"`` and ``"source"`` when known.

Candles that would make a backtest silently wrong raise ``workbench.errors.CandleError``
naming the row and the problem. Fixes only happen when asked for with ``repair=``:

- ``"drop_invalid"``: drop rows with a missing or unparsable time, a missing, non-numeric,
  infinite or non-positive price, negative volume, high below low, or open/close outside
  [low, high];
- ``"sort"``: put rows in time order (a file that is simply newest-first is reversed
  without asking: that is a layout, not a defect);
- ``"drop_duplicates"``: of rows sharing a timestamp keep the one that comes last in
  oldest-first order, as an appended, later download supersedes an earlier one (in a
  newest-first file that is the one nearer the top);
- ``"fill_gaps"``: insert each missing candle as a flat candle at the previous close
  (open = high = low = close) with zero volume, i.e. "no trades".

Repairs run in that order whatever order they are given in.

``calendar=`` declares when the market trades: ``"24/7"`` (crypto, the default), ``"24/5"``
(FX: closed from Friday 17:00 to Sunday 17:00 New York time; ``"24/5 UTC 22:00"`` and the
like move the boundaries) or an exchange_calendars name such as ``"XNYS"`` (sessions,
holidays, early closes). Validation then accepts exactly the calendar's closed hours,
refuses a candle that lies wholly inside them, and fill_gaps fills only open hours: flat
candles over a weekend would be bars that never traded, and change what a strategy sees
(a channel narrows, a moving average flattens). ``bars_per_year(candles)`` counts a year
in the bars the market really prints, for annualising.

Funding rates of perpetuals: ``fetch_funding(exchange_id, symbol, start, stop)`` fetches a
venue's real funding-rate history through ccxt (``fetch_funding_rate_history``), cached like
candles, as a series a backtest takes unchanged: ``backtest(..., funding=fetch_funding(...))``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.data._calendar import DEFAULT_CALENDAR, Calendar, bars_per_year, get_calendar
from workbench.data._layout import candle_table
from workbench.data._resample import resample_candles
from workbench.data._timeframe import parse_timeframe
from workbench.data._validate import validate
from workbench.errors import CandleError

if TYPE_CHECKING:  # pragma: no cover - ccxt loads only when fetch_candles runs
    import ccxt

__all__ = [
    "Calendar",
    "bars_per_year",
    "fetch_candles",
    "fetch_funding",
    "get_calendar",
    "load_candles",
    "parse_timeframe",
    "read_candles",
    "resample",
    "validate_candles",
]


@dataclass(frozen=True)
class _Bundled:
    file: str
    symbol: str
    source: str
    repair: tuple[str, ...]


_BUNDLED = {
    "btcusd_1h": _Bundled(
        file="btcusd_1h_bitfinex.csv.gz",
        symbol="BTC/USD",
        source="Bitfinex via CryptoDataDownload (bundled btcusd_1h_bitfinex.csv.gz)",
        repair=("sort",),
    ),
}


def load_candles(name: str = "btcusd_1h") -> pd.DataFrame:
    """Bundled real candles, as a tidy frame.

    ``"btcusd_1h"``: BTC/USD hourly from Bitfinex, 2017-07-01 11:00 to 2019-07-04 01:00 UTC,
    17,583 candles (see ATTRIBUTION.md). The file is newest-first, and in it 10 rows
    between 2017-11-11 23:00 and 2017-11-12 08:00 UTC are out of place; the loader applies
    ``repair="sort"``, which moves exactly those 10. Nothing else is changed: the file has no
    duplicates, gaps or invalid rows. 28 hours traded nothing (zero volume, flat candles)
    and are kept as such.
    """
    try:
        bundled = _BUNDLED[name]
    except KeyError:
        raise CandleError(f"no bundled candles named {name!r}; available: {', '.join(_BUNDLED)}") from None
    with resources.as_file(resources.files(__name__).joinpath(bundled.file)) as path:
        candles = read_candles(path, repair=bundled.repair)
    candles.attrs.update(symbol=bundled.symbol, source=bundled.source)
    return candles


def read_candles(
    source: str | os.PathLike | IO,
    *,
    timeframe: str | None = None,
    repair: str | Sequence[str] = (),
    calendar: str | Calendar = DEFAULT_CALENDAR,
) -> pd.DataFrame:
    """Candles from an OHLCV CSV file (path or open file; .gz and other compressions work).

    Recognised layouts: Bitfinex/CryptoDataDownload (Date, Symbol, Open, High, Low, Close,
    VolumeFrom, VolumeTo; newest first; volume = VolumeFrom, the base-asset volume) and any
    table with a time column (time, timestamp, datetime, date or unix, any case) plus open,
    high, low, close, volume. Times may be ISO 8601 text (naive means UTC) or epoch seconds
    or milliseconds. A symbol column must name one market; it becomes ``attrs["symbol"]``.

    ``timeframe`` defaults to the most common spacing of the rows. Errors name the file
    line and timestamp of each bad row; ``repair`` fixes named defects deliberately (see the
    module docstring: drop_invalid, sort, drop_duplicates, fill_gaps). ``calendar`` says when
    the market trades ("24/7", "24/5", "XNYS"...; module docstring), so its closed hours are
    not missing candles; it is kept in ``attrs["calendar"]``.
    """
    label = str(getattr(source, "name", "<stream>")) if hasattr(source, "read") else os.fspath(source)
    try:
        raw = pd.read_csv(source, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CandleError(f"{label}: not a readable CSV file ({err})") from err
    lines = np.arange(len(raw)) + 2  # line 1 is the header
    blank = raw.isna().all(axis=1).to_numpy()
    raw, lines = raw[~blank], lines[~blank]
    table, symbol = candle_table(raw, label)
    candles = validate(table, source=label, lines=lines, timeframe=timeframe, repair=repair, calendar=calendar)
    candles.attrs.update({"symbol": symbol} if symbol else {}, source=label)
    return candles


def validate_candles(
    frame: pd.DataFrame,
    *,
    timeframe: str | None = None,
    repair: str | Sequence[str] = (),
    calendar: str | Calendar | None = None,
) -> pd.DataFrame:
    """``frame`` checked and returned as a new tidy candle frame.

    Accepts a frame indexed by time or with a time column, and OHLCV columns in any case.
    ``timeframe`` defaults to ``frame.attrs["timeframe"]``, else the most common spacing;
    ``calendar`` to ``frame.attrs["calendar"]``, else "24/7", so candles read as FX stay FX
    wherever they are validated again (a backtest does).
    Errors name each bad row by position and timestamp; ``repair`` as in ``read_candles``.
    """
    # rows of a frame are quoted by position, not by the line of the file it may come from
    source = f"candles DataFrame (from {frame.attrs['source']})" if "source" in frame.attrs else "candles DataFrame"
    table, symbol = candle_table(frame, source)
    candles = validate(
        table,
        source=source,
        timeframe=timeframe or frame.attrs.get("timeframe"),
        repair=repair,
        calendar=calendar or frame.attrs.get("calendar", DEFAULT_CALENDAR),
    )
    kept = {key: frame.attrs[key] for key in ("symbol", "source") if key in frame.attrs}
    candles.attrs.update(kept, **({"symbol": symbol} if symbol and "symbol" not in kept else {}))
    return candles


def fetch_candles(
    exchange: str | ccxt.Exchange,
    symbol: str,
    timeframe: str = "1h",
    since: Any = None,
    until: Any = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    repair: str | Sequence[str] = (),
    calendar: str | Calendar = DEFAULT_CALENDAR,
) -> pd.DataFrame:
    """Closed candles of ``symbol`` from a ccxt exchange (id like ``"binance"`` or an instance).

    ``since``/``until`` (datetime, ISO string or ms since 1970; naive means UTC) bound the
    candle open times, ``until`` exclusive. ``until`` defaults to now; the still-forming
    candle is never returned. ``since`` defaults to the start of the cache, or the last
    1000 candles when nothing is cached.

    Results go to a cache (``cache_dir``, default ``<workbench home>/cache/candles``, one
    CSV per exchange/symbol/timeframe). The next call only fetches what lies outside it,
    paging through ``fetch_ohlcv`` with the exchange's largest page. ``offline=True``
    serves from the cache without touching the network (without ``until``: up to the last
    cached candle); if the network fails, the cache serves only when it covers the whole
    range (with a RuntimeWarning). Otherwise, and for unknown symbols or exchange refusals,
    a CandleError says what happened. Candles are validated like a CSV (``calendar`` as in
    ``read_candles``, for a market that closes); exchanges do have outages, so
    ``repair="fill_gaps"`` may be needed for long histories.
    """
    from workbench.data._ccxt_cache import fetch

    return fetch(
        exchange,
        symbol,
        timeframe,
        since,
        until,
        cache_dir=cache_dir,
        offline=offline,
        repair=repair,
        calendar=calendar,
    )


def fetch_funding(
    exchange_id: str,
    symbol: str,
    start: Any = None,
    stop: Any = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    client: ccxt.Exchange | None = None,
    offline: bool = False,
) -> pd.Series:
    """The funding rates a perpetual settled, from a ccxt exchange (``"binanceusdm"``, ``"gate"``...).

    Returns a float series named ``funding_rate`` indexed by settlement time (UTC
    ``DatetimeIndex`` named ``time``, ascending), ``attrs`` ``symbol`` and ``source``: exactly
    the ``funding=`` argument of ``backtest`` and ``sweep`` (a positive rate is paid by longs
    to shorts). ``symbol`` is the perpetual ("BTC/USDT:USDT"). ``start``/``stop`` (datetime,
    ISO string or ms since 1970; naive means UTC) bound the settlement times, ``stop``
    exclusive and defaulting to now; ``start`` defaults to the start of the cache, or the
    last 1000 8-hour settlements when nothing is cached. ``client`` is a ccxt instance to use
    (its id must be ``exchange_id``); by default one is made.

    Pages through ``fetch_funding_rate_history`` with the venue's largest page (1000 on
    Binance and Gate) into a cache (``cache_dir``, default ``<workbench home>/cache/funding``,
    one CSV per exchange/symbol noting the stretch of history it checked). A range inside that
    stretch is served without touching the network; otherwise only what lies before or after
    it is fetched, and pages that arrived before a network failure are kept. ``offline=True``
    never touches the network (without ``stop``: up to the end of the cache). A network
    failure, an unknown symbol, an exchange's refusal or a range without settlements raises a
    one-line CandleError saying what the cache covers and what is missing; bad arguments raise
    ParameterError.
    """
    from workbench.data._funding_cache import fetch_funding as fetch

    return fetch(exchange_id, symbol, start, stop, cache_dir=cache_dir, client=client, offline=offline)


def resample(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``candles`` aggregated to the coarser ``timeframe`` (open first, high max, low min,
    close last, volume sum).

    Buckets start on multiples of the timeframe since 1970-01-01 UTC (weekly ones on
    Monday, as on exchanges); an incomplete bucket at either end is dropped rather than
    passed off as a whole candle. Buckets follow the candles' calendar: one the market is
    closed throughout is skipped, and one it is partly closed in is whole when it holds
    every candle of the open part (an FX Friday). A finer timeframe, or one that is not a
    whole number of the input candles, is refused with a CandleError.
    """
    return resample_candles(validate_candles(candles), timeframe)
