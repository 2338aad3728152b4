"""Trading calendars: when a market is open, so that a closed market is not taken for missing
candles and a year is counted in the bars a market really prints.

Crypto trades around the clock; FX stops for the weekend; an exchange trades its sessions.
Filling the closed hours with flat candles would change what a strategy sees (a Donchian
channel narrows, a moving average flattens, trades appear that never could have), so a
candle set declares its calendar instead and validation accepts exactly its gaps.

Names:

- ``"24/7"``: always open (crypto), the default.
- ``"24/5"``: FX. The week opens Sunday 17:00 and closes Friday 17:00 New York time, the
  convention FX venues quote (the trading day rolls at 17:00 New York): 22:00 UTC in winter,
  21:00 UTC while New York keeps daylight saving time. ``"24/5 <time zone> <HH:MM>"`` moves
  the weekend boundaries, e.g. ``"24/5 UTC 22:00"`` for a fixed Friday 22:00 to Sunday
  22:00 UTC.
- any exchange_calendars name, e.g. ``"XNYS"``, ``"XLON"``, ``"CMES"``: the exchange's
  sessions, holidays, early closes and lunch breaks.

A bar of the candles' timeframe may exist when its span overlaps open hours; it is expected
(missing is an error) when the market is open at its open time or a session closes within
it, so daily bars of an exchange are expected on every session day, and FX daily bars dated
Sunday (two open hours) are allowed but not required.
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from workbench.data._timeframe import infer_timeframe, parse_timeframe
from workbench.errors import CandleError, ParameterError

DEFAULT_CALENDAR = "24/7"
_YEAR = pd.Timedelta(days=365)  # the backtest's year: a 24/7 hourly year is 8,760 bars
# bars_per_year averages over the 522 weeks from Saturday noon 2015-01-03 (UTC): whole weeks make
# 24/5 exact, ten years average an exchange's holidays out, and no market is open at either end
_REFERENCE = (pd.Timestamp("2015-01-03 12:00", tz="UTC"), pd.Timestamp("2025-01-04 12:00", tz="UTC"))
_FOREVER = 2**62  # ns: beyond any candle, with room to add a bar's length
_NAMES = "'24/7', '24/5', '24/5 <time zone> <HH:MM>' or an exchange_calendars name such as 'XNYS'"


class OpenHours:
    """A calendar's open stretches [open, close) over a span, as ascending int64 UTC
    nanoseconds, and the questions validation asks of bars (given by open time and length)."""

    def __init__(self, opens: np.ndarray, closes: np.ndarray):
        self.opens = np.asarray(opens, dtype=np.int64)
        self.closes = np.asarray(closes, dtype=np.int64)

    def trading(self, starts: np.ndarray, step: int) -> np.ndarray:
        """Bars whose span overlaps open hours: they may exist."""
        if not len(self.opens):
            return np.zeros(len(starts), dtype=bool)
        last = np.searchsorted(self.opens, starts + step, side="left") - 1  # last stretch opening before the bar ends
        return (last >= 0) & (self.closes[np.maximum(last, 0)] > starts)

    def expected(self, starts: np.ndarray, step: int) -> np.ndarray:
        """Bars the market must have printed: open at their open time, or a session closes within them."""
        if not len(self.opens):
            return np.zeros(len(starts), dtype=bool)
        current = np.searchsorted(self.opens, starts, side="right") - 1
        open_then = (current >= 0) & (starts < self.closes[np.maximum(current, 0)])
        following = np.searchsorted(self.closes, starts, side="right")  # first close after the bar opens
        closes_within = (following < len(self.closes)) & (
            self.closes[np.minimum(following, len(self.closes) - 1)] <= starts + step
        )
        return open_then | closes_within

    def bars(self, step: int) -> int:
        """Bars the stretches hold when each is cut into bars from its open; a closure shorter
        than a bar does not split a stretch (an exchange's night within its daily bars)."""
        if not len(self.opens):
            return 0
        splits = np.flatnonzero(self.opens[1:] - self.closes[:-1] >= step)
        opens = self.opens[np.r_[0, splits + 1]]
        closes = self.closes[np.r_[splits, len(self.closes) - 1]]
        return int((-((opens - closes) // step)).sum())  # each stretch rounded up to whole bars


class Calendar(ABC):
    """When a market trades. ``name`` is what ``get_calendar`` reads back (and what
    ``candles.attrs["calendar"]`` holds); ``closed`` says when the market is closed, for messages."""

    name: str
    closed: str

    @abstractmethod
    def open_hours(self, start: pd.Timestamp, end: pd.Timestamp) -> OpenHours:
        """The open stretches that overlap [start, end)."""

    def bars_per_year(self, timeframe: str) -> float:
        """How many ``timeframe`` bars a 365-day year of this market holds, for annualising
        returns over real bars only (24/5 hourly: 6,257; XNYS daily: about 251).

        The average over 2015-2024: each open stretch in bars, rounded up (an exchange's
        6.5-hour session is 7 hourly bars), closures shorter than a bar ignored (XNYS's
        nights within its daily bars)."""
        start, end = _REFERENCE
        hours = self.open_hours(start, end)
        opens = np.maximum(hours.opens, start.value)
        closes = np.minimum(hours.closes, end.value)
        bars = OpenHours(opens[closes > opens], closes[closes > opens]).bars(parse_timeframe(timeframe).value)
        return bars * (_YEAR / (end - start))

    def __repr__(self) -> str:
        return f"Calendar({self.name!r})"


class AlwaysOpen(Calendar):
    """Crypto: open every hour of every day."""

    name = "24/7"
    closed = "never"

    def open_hours(self, start: pd.Timestamp, end: pd.Timestamp) -> OpenHours:
        return OpenHours(np.array([-_FOREVER]), np.array([_FOREVER]))

    def bars_per_year(self, timeframe: str) -> float:
        return _YEAR / parse_timeframe(timeframe)


class Weekdays(Calendar):
    """FX: open from Sunday to Friday at the same wall-clock time in ``zone``; the time in UTC
    follows the zone's daylight saving time (zoneinfo)."""

    def __init__(self, zone: str = "America/New_York", at: str = "17:00"):
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ParameterError(
                f"calendar '24/5 {zone} {at}': unknown time zone {zone!r}; use an IANA name "
                "such as 'America/New_York' or 'UTC'",
                param="calendar",
                value=zone,
            ) from None
        try:
            self.at = time.fromisoformat(at)
        except ValueError:
            raise ParameterError(
                f"calendar '24/5 {zone} {at}': {at!r} is not a time of day; use HH:MM such as '17:00'",
                param="calendar",
                value=at,
            ) from None
        clock = self.at.strftime("%H:%M")
        self.name = "24/5" if (zone, clock) == ("America/New_York", "17:00") else f"24/5 {zone} {clock}"
        self.closed = f"Friday {clock} to Sunday {clock} {zone}"

    def open_hours(self, start: pd.Timestamp, end: pd.Timestamp) -> OpenHours:
        day = (start - pd.Timedelta(days=8)).date()
        sunday = day - timedelta(days=(day.weekday() + 1) % 7)
        opens, closes = [], []
        while sunday <= end.date():
            opens.append(self._utc(sunday))
            closes.append(self._utc(sunday + timedelta(days=5)))
            sunday += timedelta(days=7)
        return OpenHours(np.array(opens), np.array(closes))

    def _utc(self, day) -> int:
        """``self.at`` on ``day`` in the zone, as UTC nanoseconds."""
        return pd.Timestamp(datetime.combine(day, self.at, tzinfo=self.zone)).value


class Exchange(Calendar):
    """An exchange's sessions from the exchange_calendars package (holidays, early closes and
    lunch breaks included)."""

    def __init__(self, name: str):
        import exchange_calendars

        if name not in exchange_calendars.get_calendar_names(include_aliases=True):
            raise ParameterError(f"calendar {name!r} is not known; use {_NAMES}", param="calendar", value=name)
        self.name = name
        self.closed = "outside its exchange_calendars sessions"

    def open_hours(self, start: pd.Timestamp, end: pd.Timestamp) -> OpenHours:
        opens, closes = _sessions(self.name, start.year - 1, end.year + 1)
        first, last = np.searchsorted(closes, start.value, side="right"), np.searchsorted(opens, end.value)
        return OpenHours(opens[first:last], closes[first:last])


@functools.lru_cache(maxsize=16)
def _sessions(name: str, first_year: int, last_year: int) -> tuple[np.ndarray, np.ndarray]:
    """The open stretches of exchange ``name`` over whole years: sessions, split by their breaks."""
    import exchange_calendars

    try:
        with warnings.catch_warnings():  # exchange_calendars reads Series.values, which pandas 3 deprecates
            warnings.filterwarnings("ignore", message="Series.values returning", category=DeprecationWarning)
            exchange = exchange_calendars.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    except ValueError as err:
        raise CandleError(
            f"calendar {name!r} has no sessions for {first_year + 1}-{last_year - 1}: {str(err).splitlines()[0]}"
        ) from None
    schedule = exchange.schedule
    breaks = schedule["break_start"].notna().to_numpy()
    opens = np.concatenate([_ns(schedule["open"]), _ns(schedule["break_end"][breaks])])
    closes = np.concatenate(
        [np.where(breaks, _ns(schedule["break_start"]), _ns(schedule["close"])), _ns(schedule["close"][breaks])]
    )
    order = np.argsort(opens, kind="stable")
    return opens[order], closes[order]


def _ns(times: pd.Series) -> np.ndarray:
    return times.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").array.asi8


@functools.lru_cache(maxsize=64)
def _named(name: str) -> Calendar:
    if name == "24/7":
        return AlwaysOpen()
    if name == "24/5":
        return Weekdays()
    if name.startswith("24/5 "):
        parts = name.split()
        if len(parts) != 3:
            raise ParameterError(f"calendar {name!r} is not understood; use {_NAMES}", param="calendar", value=name)
        return Weekdays(parts[1], parts[2])
    return Exchange(name)


def get_calendar(calendar: str | Calendar) -> Calendar:
    """The calendar named ``calendar`` (see this module's docstring for the names); a Calendar
    is returned as it is."""
    if isinstance(calendar, Calendar):
        return calendar
    if not isinstance(calendar, str):
        raise ParameterError(
            f"calendar {calendar!r} is not a calendar name; use {_NAMES}", param="calendar", value=calendar
        )
    return _named(calendar.strip())


def bars_per_year(candles: pd.DataFrame) -> float:
    """How many bars a year of ``candles`` holds, by their calendar and timeframe
    (``attrs["calendar"]``, default 24/7, and ``attrs["timeframe"]``, else the most common
    spacing): the annualisation factor of per-bar returns, counting real bars only.
    24/7 hourly: 8,760; 24/5 hourly: 6,257 (365/7 weeks of 120 hours); XNYS daily: about 251."""
    timeframe = candles.attrs.get("timeframe") or infer_timeframe(candles.index)
    return get_calendar(candles.attrs.get("calendar", DEFAULT_CALENDAR)).bars_per_year(timeframe)
