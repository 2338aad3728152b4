"""Funding-rate history of perpetuals from any ccxt exchange, through a local cache, the way
candles are fetched (``_ccxt_cache``): later calls fetch only what the cache lacks, and a range
the cache covers is served without touching the network.

The cache is one CSV per exchange and symbol next to the candle cache
(``<cache>/<exchange>/<symbol>_funding.csv``; default ``<workbench home>/cache/funding``): a
first line ``# checked <from> <to>`` (ms since 1970, ``to`` exclusive) says which stretch of
the venue's history was asked for, then columns time (settlement, ms since 1970) and
funding_rate. Settlements are irregular (8 h on most contracts, 4 h or 1 h on some, and none
before a listing), so the cache remembers the stretch it checked, not only the rates it
holds: a checked stretch without settlements is still covered. It is one unbroken stretch,
so what is missing is always before ``from`` or after ``to``. Writes replace the file in one
step (``_write_cache``).

Paging. Venues cut a page at different ends when a window holds more than ``limit``
settlements: Binance USDⓈ-M ``GET /fapi/v1/fundingRate`` returns "startTime + limit", oldest
first; Gate ``GET /api/v4/futures/usdt/funding_rate`` lists newest first, so a full page is
the newest ``limit`` of the window (its ``from`` "defaults to the data start time of the
time range actually returned by to and limit"). Every request therefore bounds its window at
both ends (``since`` and ``params["until"]``), and a full page leaves the parts of the window
before its first and after its last settlement to be fetched: the cursor advances past the
last timestamp on Binance and walks back before the first one on Gate. A window ends when its
page is empty, holds nothing inside the window (no progress), or is short of ``limit``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.data._ccxt_cache import _client, _instant, _ms, _write_cache, cache_file
from workbench.data._validate import format_time
from workbench.errors import CandleError, ParameterError

SETTLEMENT = pd.Timedelta(hours=8)  # the usual funding interval (00:00, 08:00, 16:00 UTC)
DEFAULT_SETTLEMENTS = 1000  # how far back a first fetch without ``start`` reaches, in 8-hour settlements
NAME = "funding_rate"

# The most settlements one request may ask for (ccxt's feature table has no entry for funding)
# and the end a full page keeps: Binance USDⓈ-M GET /fapi/v1/fundingRate "limit: Default 100;
# max 1000", "return as startTime + limit", ascending
# (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History;
# ccxt.binance and ccxt.binanceusdm both call it for linear perpetuals); Gate GET
# /futures/{settle}/funding_rate limit 1 to 1000, default 100, newest first (gateapi-python,
# FuturesApi list_futures_funding_rate_history). Other venues get their default page, every
# page of theirs counts as possibly cut, and at either end.
PAGES: dict[str, tuple[int, str]] = {
    "binance": (1000, "oldest"),
    "binanceusdm": (1000, "oldest"),
    "gate": (1000, "newest"),
}


def fetch_funding(
    exchange_id: str,
    symbol: str,
    start: Any = None,
    stop: Any = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    client: Any = None,
    offline: bool = False,
) -> pd.Series:
    """See ``workbench.data.fetch_funding``."""
    if not isinstance(exchange_id, str) or not exchange_id:
        raise ParameterError(
            f"exchange_id={exchange_id!r} is not an exchange id; expected a ccxt id such as 'binanceusdm' or 'gate'",
            param="exchange_id",
            value=exchange_id,
        )
    if not isinstance(symbol, str) or "/" not in symbol:
        raise ParameterError(
            f"symbol={symbol!r} is not a market symbol; perpetuals look like 'BTC/USDT:USDT'",
            param="symbol",
            value=symbol,
        )
    if client is not None and getattr(client, "id", None) != exchange_id:
        raise ParameterError(
            f"client is a {getattr(client, 'id', type(client).__name__)!r} client, not "
            f"{exchange_id!r}: its rates would be cached under the wrong exchange",
            param="client",
            value=getattr(client, "id", None),
        )
    path = cache_file(cache_dir, exchange_id, symbol, "funding", folder="funding")
    label = f"{exchange_id} {symbol} funding rates"
    cached = _read_cache(path)
    now = pd.Timestamp.now(tz="UTC")
    until = _instant(stop, "stop") if stop is not None else None
    if until is None:
        end = pd.Timestamp(cached[2], unit="ms", tz="UTC") if offline and cached is not None else now
    else:
        end = min(until, now)  # no settlement lies in the future
    begin = _instant(start, "start") if start is not None else _default_start(cached, end)
    if until is not None and until <= begin:
        raise ParameterError(f"stop={stop!r} is not after start={start!r}", param="stop", value=stop)
    first, last = _ms(begin), max(_ms(begin), _ms(end))  # the range asked for: [first, last)

    missing = _missing(cached, first, last)
    if missing and offline:
        raise CandleError(
            f"offline: {_coverage(cached, path)}, so {label} {_gap(missing)} are missing; "
            "fetch once online or ask for a range inside the cache"
        )
    if missing:
        cached, failure = _update(client, exchange_id, symbol, missing, cached, path)
        still = _missing(cached, first, last)
        if failure is not None:  # a failure always leaves part of what was missing still missing
            raise CandleError(
                f"could not fetch {label} ({type(failure).__name__}: {_one_line(failure)}), and "
                f"{_coverage(cached, path)}: {_gap(still)} are missing"
                + ("; offline=True serves the cache as it is" if cached is not None else "")
            ) from failure

    rates = cached[0] if cached is not None else _empty()
    window = rates[(rates.index >= begin) & (rates.index < pd.Timestamp(last, unit="ms", tz="UTC"))].copy()
    if window.empty:  # a backtest given it would silently pay no funding
        raise CandleError(
            f"{exchange_id} has no {symbol} funding settlements between {format_time(begin)} and {_time(last)}"
        )
    window.name = NAME
    window.attrs.update(symbol=symbol, source=exchange_id)
    return window


def _default_start(cached: tuple[pd.Series, int, int] | None, end: pd.Timestamp) -> pd.Timestamp:
    """Everything cached, or the last DEFAULT_SETTLEMENTS 8-hour settlements when nothing is."""
    if cached is not None:
        return pd.Timestamp(cached[1], unit="ms", tz="UTC")
    return end - DEFAULT_SETTLEMENTS * SETTLEMENT


def _missing(cached: tuple[pd.Series, int, int] | None, first: int, last: int) -> list[tuple[int, int]]:
    """The parts of [first, last) the cache has not checked: before its stretch, after it."""
    if last <= first:
        return []
    if cached is None:
        return [(first, last)]
    _, checked_from, checked_to = cached
    parts = []
    if first < checked_from:
        parts.append((first, min(last, checked_from)))
    if last > checked_to:
        parts.append((max(first, checked_to), last))
    return parts


def _gap(parts: list[tuple[int, int]]) -> str:
    return " and ".join(f"from {_time(a)} to {_time(b)}" for a, b in parts)


def _time(ms: int) -> str:
    """A time for messages, to the second (a stretch checked past a settlement ends 1 ms after it)."""
    return format_time(pd.Timestamp(ms, unit="ms", tz="UTC").floor("s"))


def _coverage(cached: tuple[pd.Series, int, int] | None, path: Path) -> str:
    if cached is None:
        return f"there is no cache at {path}"
    return f"the cache {path} covers {_time(cached[1])} to {_time(cached[2])}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _update(
    client: Any,
    exchange_id: str,
    symbol: str,
    parts: list[tuple[int, int]],
    cached: tuple[pd.Series, int, int] | None,
    path: Path,
) -> tuple[tuple[pd.Series, int, int] | None, Exception | None]:
    """Fetch the missing ``parts`` into the cache; the network error, if one stopped it early.

    What arrived before a failure is kept when it joins the cache's stretch without a hole.
    """
    ccxt = importlib.import_module("ccxt")
    client = client if client is not None else _client(ccxt, exchange_id)
    failure = None
    try:
        client.load_markets()
        client.market(symbol)
        if not client.has.get("fetchFundingRateHistory"):
            raise CandleError(f"{client.id} does not serve funding rates (ccxt has no fetchFundingRateHistory for it)")
        for first, last in parts:
            limit, keeps = PAGES.get(client.id, (None, None))
            rows, checked_to, failure = _download(ccxt, client, symbol, first, last, limit, keeps)
            cached = _merge(cached, rows, first, checked_to, path)
            if failure is not None:
                break
    except ccxt.NetworkError as err:
        failure = err
    except ccxt.BadSymbol as err:
        raise CandleError(
            f"{client.id} has no perpetual {symbol!r} ({_one_line(err)}); perpetual symbols look like 'BTC/USDT:USDT'"
        ) from err
    except ccxt.ExchangeError as err:
        raise CandleError(f"{client.id} refused the {symbol} funding-rate request: {_one_line(err)}") from err
    return cached, failure


def _download(
    ccxt: Any, client: Any, symbol: str, first: int, last: int, limit: int | None, keeps: str | None
) -> tuple[dict[int, float], int, Exception | None]:
    """Every settlement in [first, last): the rates by time, the end of the unbroken checked
    stretch from ``first`` (``last`` unless a network error stopped it: returned third).

    A full page of a venue that ``keeps`` the "oldest" settlements of a window leaves what
    follows its last one to fetch, of one that keeps the "newest" what precedes its first, of
    an unknown one (None) both."""
    pending = [(first, last - 1)]  # windows [a, b] still to fetch, bounds inclusive as both venues take them
    rows: dict[int, float] = {}
    failure = None
    while pending:
        pending.sort()
        a, b = pending[0]
        try:
            page = client.fetch_funding_rate_history(symbol, since=a, limit=limit, params={"until": b})
        except ccxt.NetworkError as err:
            failure = err
            break
        pending.pop(0)
        inside = [
            (int(e["timestamp"]), e["fundingRate"])
            for e in page
            if e.get("timestamp") is not None and a <= e["timestamp"] <= b
        ]
        if not inside:
            continue  # an empty page, or nothing in the window (no progress): the window is done
        for time, rate in inside:
            rows[time] = _rate(rate, time, client.id, symbol)
        if limit is not None and len(page) < limit:
            continue  # the venue returned all of the window
        times = [time for time, _ in inside]
        if max(times) < b and keeps != "newest":
            pending.append((max(times) + 1, b))  # the page was the window's oldest (Binance): after its last
        if min(times) > a and keeps != "oldest":
            pending.append((a, min(times) - 1))  # the page was the window's newest (Gate): before its first
    checked_to = min(a for a, _ in pending) if pending else last
    return {t: r for t, r in rows.items() if t < checked_to}, checked_to, failure


def _rate(value: Any, time: int, exchange_id: str, symbol: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = float("nan")
    if rate != rate or abs(rate) == float("inf"):
        raise CandleError(
            f"{exchange_id} sent {value!r} as the {symbol} funding rate at {_time(time)}; expected a number"
        )
    return rate


def _merge(
    cached: tuple[pd.Series, int, int] | None,
    rows: dict[int, float],
    first: int,
    checked_to: int,
    path: Path,
) -> tuple[pd.Series, int, int] | None:
    """The cache with [first, checked_to) and its ``rows`` added, written; unchanged when that
    stretch is empty or would leave a hole."""
    if checked_to <= first:
        return cached
    fresh = pd.Series(list(rows.values()), index=_index(list(rows)), dtype="float64", name=NAME)
    if cached is None:
        merged, checked_from, checked_until = fresh, first, checked_to
    else:
        rates, checked_from, checked_until = cached
        if checked_to < checked_from or first > checked_until:
            return cached  # not touching the cache's stretch: storing it would leave a hole
        merged = pd.concat([rates, fresh])
        merged = merged[~merged.index.duplicated(keep="last")]
        checked_from, checked_until = min(first, checked_from), max(checked_to, checked_until)
    merged = merged.sort_index()
    merged.name = NAME
    _write_cache(path, merged.to_frame(NAME), preamble=f"# checked {checked_from} {checked_until}\n")
    return merged, checked_from, checked_until


def _index(times: list[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(times, dtype="int64"), unit="ms", utc=True), name="time").as_unit(
        "ns"
    )


def _empty() -> pd.Series:
    return pd.Series([], index=_index([]), dtype="float64", name=NAME)


def _read_cache(path: Path) -> tuple[pd.Series, int, int] | None:
    """The cached rates and the stretch [from, to) (ms) they cover, or None without a cache."""
    if not path.exists():
        return None
    checked_from: str | int  # read as text, then the milliseconds
    checked_to: str | int
    try:
        with open(path, encoding="utf-8") as handle:
            mark, word, checked_from, checked_to = handle.readline().split()
            if (mark, word) != ("#", "checked"):
                raise ValueError("the first line does not say what the cache covers")
            raw = pd.read_csv(handle)
        times = raw["time"].astype("int64")
        rates = pd.Series(raw[NAME].astype("float64").to_numpy(), index=_index(times.tolist()), name=NAME)
        checked_from, checked_to = int(checked_from), int(checked_to)
    except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CandleError(
            f"the funding cache {path} is unreadable ({_one_line(err)}); delete it to fetch again"
        ) from err
    return rates.sort_index(), checked_from, checked_to
