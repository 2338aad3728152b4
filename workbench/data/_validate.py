"""Turn a raw candle table into the tidy frame, or say exactly which rows are wrong.

A backtest on broken candles runs happily and lies, so every defect is an error that names
the row (its CSV line number when there is one, and its timestamp) and the problem. The
only fixes are the repairs the caller names; they run in a fixed order: drop_invalid, sort,
drop_duplicates, fill_gaps.

A gap is a missing candle only when the candles' calendar says the market was open: FX
weekends and an exchange's nights and holidays are not defects, and fill_gaps never invents
candles for them (see ``workbench.data._calendar``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.data._calendar import AlwaysOpen, Calendar, get_calendar
from workbench.data._layout import COLUMNS
from workbench.data._timeframe import format_timeframe, infer_timeframe, parse_timeframe
from workbench.errors import CandleError, ParameterError

REPAIRS = ("drop_invalid", "sort", "drop_duplicates", "fill_gaps")
_SHOWN = 5  # problems quoted in a message; the rest are counted


def repairs(repair: str | Sequence[str]) -> frozenset[str]:
    """The requested repair names, checked against the known ones."""
    names = (repair,) if isinstance(repair, str) else tuple(repair or ())
    unknown = [name for name in names if name not in REPAIRS]
    if unknown:
        raise ParameterError(
            f"unknown repair {unknown[0]!r}; choose from {', '.join(REPAIRS)}",
            param="repair",
            value=unknown[0],
        )
    return frozenset(names)


def format_time(ts: pd.Timestamp) -> str:
    """A candle time as people read it: '2019-01-03 04:00 UTC' (seconds only when present)."""
    pattern = "%Y-%m-%d %H:%M:%S" if ts.second or ts.microsecond else "%Y-%m-%d %H:%M"
    return ts.strftime(pattern) + " UTC"


@dataclass
class _Report:
    """Problems found so far: for each kind, the row positions and how to describe one row.

    Texts are only built for the few rows a message quotes, so a file with a million bad
    rows is reported as fast as one with three.
    """

    source: str
    lines: np.ndarray | None  # file line by row position, when the rows come from a file
    times: pd.Series  # parsed time by row position
    found: list[tuple[np.ndarray, Callable[[int], str], str | None]] = field(default_factory=list)

    def row(self, position: int) -> str:
        return f"line {self.lines[position]}" if self.lines is not None else f"row {position}"

    def where(self, position: int) -> str:
        time = self.times.iloc[position]
        return self.row(position) if pd.isna(time) else f"{self.row(position)} ({format_time(time)})"

    def add(self, positions: np.ndarray, describe: Callable[[int], str], fix: str | None) -> None:
        if len(positions):
            self.found.append((np.sort(np.asarray(positions, dtype=np.int64)), describe, fix))

    def raise_if_any(self, timeframe: str | None = None) -> None:
        if not self.found:
            return
        count = sum(len(positions) for positions, _, _ in self.found)
        quoted: dict[int, list[str]] = {}  # a row with several problems is quoted once, all of them
        for position, describe in sorted(
            ((int(position), describe) for positions, describe, _ in self.found for position in positions[:_SHOWN]),
            key=lambda item: item[0],
        ):
            if position in quoted or len(quoted) < _SHOWN:
                quoted.setdefault(position, []).append(describe(position))
        lines = [f"  {self.where(position)}: {'; '.join(texts)}" for position, texts in quoted.items()]
        shown = sum(len(texts) for texts in quoted.values())
        if count > shown:
            lines.append(f"  ... and {count - shown} more")
        fixes = {fix for _, _, fix in self.found if fix}
        advice = "Fix the data"
        if fixes:
            chosen = [name for name in REPAIRS if name in fixes]
            advice += f", or repair it deliberately with repair={chosen!r} (see help(workbench.read_candles))"
        framing = f" {timeframe}" if timeframe else ""
        raise CandleError(
            f"{self.source}: {count} problem{'s' if count > 1 else ''} in the{framing} candles:\n"
            + "\n".join(lines)
            + f"\n{advice}."
        )


def validate(
    table: pd.DataFrame,
    *,
    source: str,
    lines: Sequence[int] | None = None,
    timeframe: str | None = None,
    repair: str | Sequence[str] = (),
    calendar: str | Calendar = "24/7",
) -> pd.DataFrame:
    """The tidy candle frame from ``table`` (columns time, open, high, low, close, volume, unparsed).

    ``lines`` gives the file line of each row, so messages can quote it.
    Rows keep their original position as index label until the tidy frame is built.
    """
    fixes = repairs(repair)
    market = get_calendar(calendar)
    step = parse_timeframe(timeframe) if timeframe else None
    if table.empty:
        raise CandleError(f"{source}: no candles")
    table = table.reset_index(drop=True)
    work = pd.DataFrame({"time": _parse_times(table["time"])})
    for column in COLUMNS:
        work[column] = _parse_numbers(table[column])
    report = _Report(source, None if lines is None else np.asarray(lines), work["time"])

    invalid = _check_rows(table, work, report, record="drop_invalid" not in fixes)
    if "drop_invalid" in fixes:
        work = work[~invalid]
    timeless = work["time"].isna().any()  # rows that belong somewhere unknown
    work = _check_order(work[work["time"].notna()], report, fixes)
    if work.empty:
        report.raise_if_any(timeframe)
        raise CandleError(f"{source}: no valid candles left after repair={sorted(fixes)!r}")
    if work["time"].is_monotonic_increasing and not timeless:  # else spacing means nothing
        if step is None:
            try:
                step = parse_timeframe(infer_timeframe(pd.DatetimeIndex(work["time"])))
            except CandleError:
                report.raise_if_any(timeframe)
                raise
        fill = "fill_gaps" in fixes and not report.found
        if isinstance(market, AlwaysOpen):
            work = _check_spacing(work, step, report, fill=fill)
        else:
            work = _check_sessions(work, step, market, report, fill=fill)
    name = format_timeframe(step) if step is not None else timeframe
    report.raise_if_any(name)

    frame = work.set_index(pd.DatetimeIndex(work["time"], name="time"))[list(COLUMNS)].astype("float64")
    frame.attrs.update(timeframe=name, calendar=market.name)
    return frame


def _parse_times(raw: pd.Series) -> pd.Series:
    """UTC timestamps; NaT where a value is missing or unparsable. Naive times are taken as UTC."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        numeric = pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype)
        numbers = raw if numeric else pd.to_numeric(raw.astype(object), errors="coerce")
        if numbers.notna().sum() * 2 > raw.notna().sum():
            parsed = pd.to_datetime(numbers, unit=_epoch_unit(numbers), utc=True, errors="coerce")
        else:
            parsed = pd.to_datetime(raw.astype(object), format="ISO8601", utc=True, errors="coerce")
    return parsed.astype("datetime64[ns, UTC]")


def _epoch_unit(numbers: pd.Series) -> str:
    """Seconds, milliseconds, micro- or nanoseconds since 1970, told apart by magnitude."""
    largest = float(numbers.abs().max())
    return "s" if largest < 1e11 else "ms" if largest < 1e14 else "us" if largest < 1e17 else "ns"


def _parse_numbers(raw: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64").to_numpy()
    return pd.to_numeric(raw.astype(object), errors="coerce").astype("float64").to_numpy()


def _check_rows(table: pd.DataFrame, work: pd.DataFrame, report: _Report, *, record: bool) -> np.ndarray:
    """Flag rows with a missing or unparsable time, or impossible prices or volume."""
    low, high = work["low"].to_numpy(), work["high"].to_numpy()
    # called with the row position; the lambdas bind their loop values as defaults
    checks: list[tuple[np.ndarray, Callable[..., str]]] = []
    absent_time = table["time"].isna().to_numpy()
    checks.append((absent_time, lambda i: "timestamp is missing"))
    checks.append(
        (
            work["time"].isna().to_numpy() & ~absent_time,
            lambda i: (
                f"timestamp {table['time'].iloc[i]!r} is not a date (expected ISO 8601 or epoch seconds/milliseconds)"
            ),
        )
    )
    for column in COLUMNS:
        values = work[column].to_numpy()
        absent = table[column].isna().to_numpy()
        checks.append((absent, lambda i, c=column: f"{c} is missing"))
        checks.append((np.isnan(values) & ~absent, lambda i, c=column: f"{c} {table[c].iloc[i]!r} is not a number"))
        checks.append((np.isinf(values), lambda i, c=column, v=values: f"{c} {float(v[i])!r} is not finite"))
        if column == "volume":
            checks.append((values < 0, lambda i, v=values: f"volume {float(v[i])!r} is negative"))
        else:
            checks.append((values <= 0, lambda i, c=column, v=values: f"{c} {float(v[i])!r} is not positive"))
    checks.append((high < low, lambda i: f"high {float(high[i])!r} is below low {float(low[i])!r}"))
    for column in ("open", "close"):
        values = work[column].to_numpy()
        outside = (high >= low) & ((values < low) | (values > high))
        checks.append(
            (
                outside,
                lambda i, c=column, v=values: (
                    f"{c} {float(v[i])!r} is outside [low {float(low[i])!r}, high {float(high[i])!r}]"
                ),
            )
        )
    invalid = np.logical_or.reduce([mask for mask, _ in checks])
    if record:
        report.add(
            np.flatnonzero(invalid),
            lambda i: "; ".join(describe(i) for mask, describe in checks if mask[i]),
            "drop_invalid",
        )
    return invalid


def _check_order(work: pd.DataFrame, report: _Report, fixes: frozenset[str]) -> pd.DataFrame:
    """Put rows in time order: reverse a newest-first table, sort or report, then handle duplicates."""
    steps = np.diff(_nanoseconds(work["time"]))
    if (steps < 0).sum() > (steps > 0).sum():
        work = work.iloc[::-1]  # a newest-first layout (like Bitfinex's files), not a defect
        steps = -steps[::-1]
    if (steps > 0).all():  # the usual case: strictly increasing, so sorted and without duplicates
        return work
    times = work["time"]
    if not times.is_monotonic_increasing:
        if "sort" not in fixes:
            later = times.cummax().shift()
            report.add(
                work.index[(times < later).to_numpy()],
                lambda i: f"out of order: comes after the later candle {format_time(later[i])}",
                "sort",
            )
            return work
        work = work.sort_values("time", kind="stable")
        times = work["time"]
    if "drop_duplicates" in fixes:
        return work[~times.duplicated(keep="last")]
    repeated = times.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return work
    position = {label: k for k, label in enumerate(work.index)}

    def describe(i: int) -> str:
        first = work.index[position[i] - 1]
        same = work.loc[i, list(COLUMNS)].equals(work.loc[first, list(COLUMNS)])
        relation = "repeats" if same else "has the same time as, but other values than,"
        return f"duplicate: {relation} {report.row(first)}"

    report.add(work.index[repeated], describe, "drop_duplicates")
    return work


def _check_spacing(work: pd.DataFrame, step: pd.Timedelta, report: _Report, *, fill: bool) -> pd.DataFrame:
    """Report (or fill with flat zero-volume candles) missing candles; report off-grid spacing."""
    ticks = np.diff(_nanoseconds(work["time"]))
    off_grid = np.concatenate(([False], ticks % step.value != 0))
    missing = np.concatenate(([False], ticks > step.value)) & ~off_grid
    if not (off_grid.any() or missing.any()):
        return work
    times = work["time"]
    gaps = times.diff()
    previous = times.shift()
    name = format_timeframe(step)
    report.add(
        work.index[off_grid],
        lambda i: (
            f"{_duration(gaps[i])} after the previous candle ({format_time(previous[i])}), not a whole number of {name} candles"
        ),
        None,
    )
    if fill and not off_grid.any():
        return _fill(work, pd.date_range(times.iloc[0], times.iloc[-1], freq=step, name="time"))

    def describe(i: int) -> str:
        count = int(gaps[i] / step) - 1
        return f"{count} {name} candle{'s' if count > 1 else ''} missing before it (previous candle {format_time(previous[i])})"

    report.add(work.index[missing], describe, "fill_gaps")
    return work


def _check_sessions(
    work: pd.DataFrame, step: pd.Timedelta, calendar: Calendar, report: _Report, *, fill: bool
) -> pd.DataFrame:
    """Like ``_check_spacing``, for a market that closes: a candle must lie (at least partly)
    in open hours, and a gap only misses the candles the calendar expects in it.

    Across a closure the grid may shift (an FX 4h grid aligned to 17:00 New York moves by an
    hour in UTC when daylight saving time changes): the bars after a closed stretch follow the
    next candle's grid, those before it the previous candle's.
    """
    times = _nanoseconds(work["time"])
    bar = step.value
    hours = calendar.open_hours(pd.Timestamp(times[0], tz="UTC"), pd.Timestamp(times[-1] + bar, tz="UTC"))
    name = format_timeframe(step)
    report.add(
        work.index[~hours.trading(times, bar)],
        lambda i: f"the {calendar.name} market is closed throughout this {name} candle (closed {calendar.closed})",
        None,
    )
    missing: dict[np.integer, np.ndarray] = {}  # row position -> the expected candles missing before it
    off_grid = []
    for k in np.flatnonzero(np.diff(times) != bar):
        before, after = times[k], times[k + 1]
        backward = after - bar * np.arange(1, (after - before - 1) // bar + 1)  # on the later candle's grid
        swallowed = np.flatnonzero(~hours.trading(backward, bar))
        if not len(swallowed):  # no closure in between: one grid
            if (after - before) % bar:
                off_grid.append(k + 1)
                continue
            candidates = backward
        else:  # the earlier candle's grid up to the closure, the later one's after it
            closure = backward[swallowed[0]]
            forward = before + bar * np.arange(1, (closure - before - 1) // bar + 1)
            candidates = np.concatenate([forward, backward[: swallowed[0]]])
        absent = np.sort(candidates[hours.expected(candidates, bar)])
        if len(absent):
            missing[k + 1] = absent
    gaps = work["time"].diff()
    previous = work["time"].shift()
    report.add(
        work.index[off_grid],
        lambda i: (
            f"{_duration(gaps[i])} after the previous candle ({format_time(previous[i])}), not a whole number of {name} candles"
        ),
        None,
    )
    if not missing:
        return work
    if fill and not off_grid and not report.found:
        added = pd.DatetimeIndex(np.concatenate(list(missing.values())), tz="UTC")
        return _fill(work, pd.DatetimeIndex(work["time"]).union(added).rename("time"))
    label = {work.index[position]: len(absent) for position, absent in missing.items()}

    def describe(i: int) -> str:
        count = label[i]
        return f"{count} {name} candle{'s' if count > 1 else ''} missing before it (previous candle {format_time(previous[i])})"

    report.add(work.index[list(missing)], describe, "fill_gaps")
    return work


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """Timestamps (no NaT) as int64 nanoseconds, whatever unit the column has."""
    values = times.array
    return values.asi8 * (pd.Timedelta(1, unit=values.unit).value)


def _duration(gap: pd.Timedelta) -> str:
    return (
        format_timeframe(gap)
        if gap > pd.Timedelta(0) and gap % pd.Timedelta(seconds=1) == pd.Timedelta(0)
        else str(gap)
    )


def _fill(work: pd.DataFrame, times: pd.DatetimeIndex) -> pd.DataFrame:
    """``work`` on ``times`` (its own and the missing ones): missing candles become flat
    candles at the previous close with zero volume."""
    frame = work.set_index("time")
    full = frame.reindex(times)
    added = full["close"].isna()
    close = full["close"].ffill()
    for column in ("open", "high", "low", "close"):
        full[column] = full[column].where(~added, close)
    full["volume"] = full["volume"].where(~added, 0.0)
    return full.reset_index()
