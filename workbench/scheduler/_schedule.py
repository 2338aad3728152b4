"""Schedules: when a live notebook is due.

Two forms, both in UTC:

- ``"candle:5m"`` — every closed candle of a timeframe (``m``, ``h`` or ``d``; candles open at
  multiples of the timeframe since the Unix epoch, as exchanges align them), fired
  ``delay`` seconds after the close (default 3 s) so the exchange has published the candle;
  ``"candle:1h+10s"`` sets the delay.
- a cron expression (croniter): five fields, or six with seconds last (``"*/10 * * * * 30"``).

Coalescing lives here: ``latest(now)`` is the one due time that a scheduler which was down
runs, however many fire times it missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from workbench.errors import SchedulerError

_CANDLE = re.compile(r"candle:(\d+)([mhd])(?:\+(\d+)s)?")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
DEFAULT_CANDLE_DELAY = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; ``text`` is what the tenant wrote (and what is stored)."""

    text: str
    period: int | None = None  # candle schedules: the timeframe in seconds
    delay: int = 0  # candle schedules: seconds after the close

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        moment = _utc(moment)
        if self.period is None:
            return croniter(self.text, moment).get_next(datetime)
        k = (moment - _EPOCH - timedelta(seconds=self.delay)) // timedelta(seconds=self.period) + 1
        return _EPOCH + timedelta(seconds=k * self.period + self.delay)

    def latest(self, moment: datetime) -> datetime:
        """The last due time at or before ``moment``: what a late scheduler runs, once."""
        moment = _utc(moment)
        if self.period is None:
            if croniter.match(self.text, moment.replace(microsecond=0)):
                return moment.replace(microsecond=0)
            return croniter(self.text, moment).get_prev(datetime)
        k = (moment - _EPOCH - timedelta(seconds=self.delay)) // timedelta(seconds=self.period)
        return _EPOCH + timedelta(seconds=k * self.period + self.delay)


def parse_schedule(text: str) -> Schedule:
    """``text`` as a Schedule, or SchedulerError saying which forms are accepted."""
    if not isinstance(text, str) or not text.strip():
        raise SchedulerError(
            f"schedule {text!r} is empty; use 'candle:5m' (every closed 5-minute "
            f"candle) or a cron expression such as '*/5 * * * *'"
        )
    text = " ".join(text.split())
    if text.startswith("candle:"):
        match = _CANDLE.fullmatch(text)
        if not match or int(match.group(1)) == 0:
            raise SchedulerError(
                f"schedule {text!r} is not a candle schedule; write 'candle:' and a "
                f"timeframe such as 1m, 5m, 1h or 1d, optionally '+Ns' for the delay "
                f"after the close (e.g. 'candle:5m+10s')"
            )
        number, unit, delay = match.groups()
        period = int(number) * _UNIT_SECONDS[unit]
        delay = DEFAULT_CANDLE_DELAY if delay is None else int(delay)
        if delay >= period:
            raise SchedulerError(
                f"schedule {text!r}: the delay {delay}s must be shorter than the timeframe ({period}s)"
            )
        return Schedule(text, period, delay)
    if len(text.split()) not in (5, 6) or not croniter.is_valid(text):
        raise SchedulerError(
            f"schedule {text!r} is neither a candle schedule ('candle:5m') nor a "
            f"valid cron expression (five fields: minute hour day month weekday, "
            f"optionally a sixth for seconds, e.g. '*/5 * * * *')"
        )
    return Schedule(text)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise SchedulerError(f"time {moment.isoformat()} has no time zone; schedules are in UTC")
    return moment.astimezone(UTC)
