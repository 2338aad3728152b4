"""Candles from any ccxt exchange, through a local cache that later calls extend and offline calls reuse.

The cache is one CSV per exchange, symbol and timeframe (``<cache>/<exchange>/<symbol>_<tf>.csv``,
columns time in ms since 1970 (candle open), open, high, low, close, volume): pandas reads
it without extra dependencies and people can open it. It holds closed candles only and
covers one unbroken stretch of the exchange's history, so "what is missing" is always
"before its first candle" or "after its last". Writes go to a temporary file that
replaces the old one, so an interrupted fetch never leaves a torn cache.
"""

from __future__ import annotations

import difflib
import importlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench._home import home
from workbench.data._calendar import Calendar
from workbench.data._layout import COLUMNS
from workbench.data._timeframe import format_timeframe, parse_timeframe
from workbench.data._validate import format_time, validate
from workbench.errors import CandleError, ParameterError

DEFAULT_CANDLES = 1000  # how far back a first fetch without ``since`` reaches


def fetch(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since: Any,
    until: Any,
    *,
    cache_dir: str | os.PathLike | None,
    offline: bool,
    repair: str | Sequence[str],
    calendar: str | Calendar,
) -> pd.DataFrame:
    """See ``workbench.data.fetch_candles``."""
    step = parse_timeframe(timeframe)
    name = format_timeframe(step)
    exchange_id = exchange if isinstance(exchange, str) else exchange.id
    path = cache_file(cache_dir, exchange_id, symbol, name)
    label = f"{exchange_id} {symbol} {name}"
    cached = _read_cache(path)
    now = pd.Timestamp.now(tz="UTC")
    stop = _instant(until, "until") if until is not None else None
    closed_end = now - step  # the latest open time of a closed candle
    if offline and stop is None and cached is not None:
        closed_end = cached.index[-1]  # offline without an end: as far as the cache goes
    start = _instant(since, "since") if since is not None else _default_start(cached, stop, closed_end, step)
    if stop is not None and stop <= start:
        raise ParameterError(f"until={until!r} is not after since={since!r}", param="until", value=until)

    fetch_from = _first_missing(cached, start, stop, closed_end, step)
    if fetch_from is not None and not offline:
        fetch_to = min(stop, closed_end + step) if stop is not None else closed_end + step
        cached, failure = _download(exchange, symbol, name, fetch_from, fetch_to, step, path, cached, closed_end)
        fetch_from = _first_missing(cached, start, stop, closed_end, step) if failure else None
        if failure is not None and fetch_from is None:
            warnings.warn(
                f"{exchange_id} unreachable ({failure}); serving {label} from the cache {path}",
                RuntimeWarning,
                stacklevel=3,
            )
        elif failure is not None:
            raise CandleError(
                f"could not fetch {label} candles ({type(failure).__name__}: {failure}), "
                f"and {_coverage(cached, path)}: candles {_missing(cached, fetch_from)} are missing"
                + ("; offline=True serves the cache as it is" if cached is not None else "")
            ) from failure
    elif fetch_from is not None:
        raise CandleError(
            f"offline: {_coverage(cached, path)}, so {label} candles {_missing(cached, fetch_from)} "
            "are missing; fetch once online or ask for a range inside the cache"
        )

    if cached is None:
        raise CandleError(f"{exchange_id} returned no {symbol} {name} candles from {format_time(start)} on")
    window = cached[(cached.index >= start) & (cached.index <= closed_end)]
    if stop is not None:
        window = window[window.index < stop]
    if window.empty:
        end = format_time(stop) if stop is not None else "now"
        raise CandleError(f"{exchange_id} has no {symbol} {name} candles between {format_time(start)} and {end}")
    table = window.reset_index()
    candles = validate(table, source=label, timeframe=name, repair=repair, calendar=calendar)
    candles.attrs.update(symbol=symbol, source=exchange_id)
    return candles


def cache_file(
    cache_dir: str | os.PathLike | None, exchange_id: str, symbol: str, timeframe: str, folder: str = "candles"
) -> Path:
    """Where the candles of one exchange, symbol and timeframe are cached (by default in the
    workbench home's ``cache/<folder>``; funding rates use ``folder="funding"``)."""
    if cache_dir is None:
        cache_dir = home() / "cache" / folder
    safe_symbol = "".join(c if c.isalnum() or c == "." else "-" for c in symbol)
    return Path(cache_dir) / exchange_id / f"{safe_symbol}_{timeframe}.csv"


def _instant(value: Any, name: str) -> pd.Timestamp:
    """A UTC time from a datetime, an ISO string or milliseconds since 1970 (naive means UTC)."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return pd.Timestamp(int(value), unit="ms", tz="UTC")
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{name}={value!r} is not a time ({err})", param=name, value=value) from err
    if pd.isna(ts):
        raise ParameterError(f"{name}={value!r} is not a time", param=name, value=value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _default_start(
    cached: pd.DataFrame | None, stop: pd.Timestamp | None, closed_end: pd.Timestamp, step: pd.Timedelta
) -> pd.Timestamp:
    """Everything cached, or the last DEFAULT_CANDLES candles when nothing is."""
    if cached is not None:
        return cached.index[0]
    end = min(stop, closed_end + step) if stop is not None else closed_end + step
    return end - DEFAULT_CANDLES * step


def _first_missing(
    cached: pd.DataFrame | None,
    start: pd.Timestamp,
    stop: pd.Timestamp | None,
    closed_end: pd.Timestamp,
    step: pd.Timedelta,
) -> pd.Timestamp | None:
    """Where fetching must begin for the cache to cover [start, stop), or None when it does."""
    if cached is None or cached.index[0] - start >= step:
        return start
    following = cached.index[-1] + step
    if following <= closed_end and (stop is None or following < stop):
        return following
    return None


def _coverage(cached: pd.DataFrame | None, path: Path) -> str:
    if cached is None:
        return f"there is no cache at {path}"
    return f"the cache {path} holds {format_time(cached.index[0])} to {format_time(cached.index[-1])}"


def _missing(cached: pd.DataFrame | None, fetch_from: pd.Timestamp) -> str:
    if cached is not None and fetch_from < cached.index[0]:
        return f"from {format_time(fetch_from)} to {format_time(cached.index[0])}"
    return f"from {format_time(fetch_from)} on"


def _download(
    exchange: Any,
    symbol: str,
    timeframe: str,
    fetch_from: pd.Timestamp,
    fetch_to: pd.Timestamp,
    step: pd.Timedelta,
    path: Path,
    cached: pd.DataFrame | None,
    closed_end: pd.Timestamp,
) -> tuple[pd.DataFrame | None, Exception | None]:
    """Fetch [fetch_from, fetch_to) into the cache; the network error, if one stopped it early.

    Pages that arrived before a network failure are kept when they extend the cache
    without leaving a hole.
    """
    ccxt = importlib.import_module("ccxt")
    client = _client(ccxt, exchange)
    rows: list[list] = []
    failure = None
    try:
        for page in _pages(client, symbol, timeframe, fetch_from, fetch_to, step):
            rows.extend(page)
    except ccxt.NetworkError as err:
        failure = err
    except ccxt.BadSymbol as err:
        raise CandleError(f"{client.id} has no market {symbol!r} ({err}); symbols look like 'BTC/USDT'") from err
    except ccxt.ExchangeError as err:
        raise CandleError(f"{client.id} refused the {symbol} {timeframe} candle request: {err}") from err
    fresh = pd.DataFrame(rows, columns=["time", *COLUMNS])
    fresh.index = pd.DatetimeIndex(pd.to_datetime(fresh.pop("time"), unit="ms", utc=True), name="time").as_unit("ns")
    fresh = fresh.astype("float64")
    fresh = fresh[fresh.index <= closed_end]  # the still-forming candle is never stored
    if fresh.empty:
        return cached, failure
    if cached is not None and fresh.index[-1] < cached.index[0] - step:
        return cached, failure  # a partial fetch before the cache: storing it would leave a hole
    merged = fresh if cached is None else pd.concat([cached, fresh])
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    _write_cache(path, merged)
    return merged, failure


def _client(ccxt: Any, exchange: Any) -> Any:
    if not isinstance(exchange, str):
        return exchange
    if exchange not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange, ccxt.exchanges, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see ccxt.exchanges for the ids"
        raise CandleError(f"unknown exchange {exchange!r}{hint}")
    return getattr(ccxt, exchange)({"enableRateLimit": True})


def _pages(
    client: Any, symbol: str, timeframe: str, start: pd.Timestamp, stop: pd.Timestamp, step: pd.Timedelta
) -> Iterator[list[list]]:
    """fetch_ohlcv pages from ``start`` until ``stop`` or the exchange has no more candles."""
    client.load_markets()
    market = client.market(symbol)
    if not client.has.get("fetchOHLCV"):
        raise CandleError(f"{client.id} does not serve candles (ccxt has no fetchOHLCV for it)")
    limit = _page_limit(client, market)
    cursor, end, step_ms = _ms(start), _ms(stop), _ms(step)
    while cursor < end:
        page = [row for row in client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit) if row[0] >= cursor]
        if not page:
            return
        yield page
        cursor = max(row[0] for row in page) + step_ms


def _page_limit(client: Any, market: dict) -> int | None:
    """The most candles one fetch_ohlcv call may ask for, from ccxt's feature table (None: its default)."""
    section = (getattr(client, "features", None) or {}).get(market.get("type"), {}) or {}
    if "fetchOHLCV" not in section:  # derivatives nest their features by linear/inverse
        section = section.get("linear" if market.get("linear") else "inverse", {}) or {}
    return (section.get("fetchOHLCV") or {}).get("limit")


def _ms(value: pd.Timestamp | pd.Timedelta) -> int:
    return int(value.value // 1_000_000)


def _read_cache(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        raw = pd.read_csv(path)
        times = pd.to_datetime(raw.pop("time").astype("int64"), unit="ms", utc=True)
        frame = raw[list(COLUMNS)].astype("float64")
    except (ValueError, KeyError, pd.errors.ParserError) as err:
        raise CandleError(f"the candle cache {path} is unreadable ({err}); delete it to fetch again") from err
    frame.index = pd.DatetimeIndex(times, name="time").as_unit("ns")
    return frame if not frame.empty else None


def _write_cache(path: Path, frame: pd.DataFrame, preamble: str = "") -> None:
    """Replace the cache file in one step, so readers see the old or the new file, never half.

    ``preamble`` (whole lines) goes before the table: the funding cache notes what it covers there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    out.index = out.index.as_unit("ms").asi8
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", newline="") as handle:
            handle.write(preamble)
            out.to_csv(handle, index_label="time")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
