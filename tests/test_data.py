"""workbench.data: the bundled candles, CSV reading and validation, repairs, resampling, and
fetch_candles with the real ccxt.binance client talking to a loopback Binance."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopback_exchange import BinanceSpot

import workbench as wb
from workbench.data import bars_per_year, fetch_funding, get_calendar
from workbench.errors import CandleError, ParameterError

BUNDLED = Path(wb.__file__).parent / "data" / "btcusd_1h_bitfinex.csv.gz"
HEADER = "time,open,high,low,close,volume"
GOOD = [  # hourly candles, lines 2..7 of a file with HEADER on line 1
    "2019-01-01 00:00,3800.0,3850.0,3790.0,3840.0,10.0",
    "2019-01-01 01:00,3840.0,3880.0,3830.0,3870.0,12.0",
    "2019-01-01 02:00,3870.0,3900.0,3860.0,3890.0,8.0",
    "2019-01-01 03:00,3890.0,3895.0,3850.0,3860.0,9.5",
    "2019-01-01 04:00,3860.0,3870.0,3820.0,3825.0,11.0",
    "2019-01-01 05:00,3825.0,3840.0,3800.0,3835.0,7.0",
]


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def replaced(index: int, row: str) -> list[str]:
    rows = list(GOOD)
    rows[index] = row
    return rows


def candle_error(path: Path, **kwargs) -> str:
    with pytest.raises(CandleError) as caught:
        wb.read_candles(path, **kwargs)
    return str(caught.value)


# --- the bundled series -------------------------------------------------------------------


def test_bundled_candles_are_tidy():
    candles = wb.load_candles()
    assert len(candles) == 17_583
    assert candles.index[0] == pd.Timestamp("2017-07-01 11:00", tz="UTC")
    assert candles.index[-1] == pd.Timestamp("2019-07-04 01:00", tz="UTC")
    assert candles.index.name == "time" and str(candles.index.dtype) == "datetime64[ns, UTC]"
    assert list(candles.columns) == ["open", "high", "low", "close", "volume"]
    assert (candles.dtypes == "float64").all()
    assert candles.index.is_monotonic_increasing and candles.index.is_unique
    assert (np.diff(candles.index.asi8) == 3_600 * 10**9).all()  # no gaps
    assert candles.attrs["timeframe"] == "1h" and candles.attrs["symbol"] == "BTC/USD"
    assert "Bitfinex" in candles.attrs["source"]
    # first line of the file: 2019-07-04 01:00,BTCUSD,11849.99,11880.0,11790.01,11849.69,303.61,...
    assert candles.loc["2019-07-04 01:00"].tolist() == [11849.99, 11880.0, 11790.01, 11849.69, 303.61]
    assert (candles["volume"] == 0).sum() == 28  # hours without trades, kept as they are


def test_bundled_file_needs_exactly_the_documented_sort(tmp_path):
    message = candle_error(BUNDLED)
    assert (
        "line 14371 (2017-11-12 03:00 UTC): out of order: comes after the later candle 2017-11-12 08:00 UTC" in message
    )
    assert "repair=['sort']" in message
    raw = pd.read_csv(BUNDLED)
    ascending = pd.to_datetime(raw["Date"], utc=True).iloc[::-1].to_numpy()
    assert (ascending != wb.load_candles().index.to_numpy()).sum() == 10  # the rows the sort moves


def test_unknown_bundled_name():
    with pytest.raises(CandleError, match="no bundled candles named 'ethusd_1h'; available: btcusd_1h"):
        wb.load_candles("ethusd_1h")


# --- layouts --------------------------------------------------------------------------------


def test_bitfinex_layout_newest_first_with_base_volume(tmp_path):
    path = write_csv(
        tmp_path,
        [
            "2019-01-01 02:00,ETHUSD,140.0,141.0,139.0,140.5,50.0,7025.0",
            "2019-01-01 01:00,ETHUSD,139.0,140.5,138.5,140.0,40.0,5600.0",
            "2019-01-01 00:00,ETHUSD,138.0,139.5,137.0,139.0,30.0,4170.0",
        ],
        header="Date,Symbol,Open,High,Low,Close,VolumeFrom,VolumeTo",
    )
    candles = wb.read_candles(path)
    assert candles.index[0] == pd.Timestamp("2019-01-01 00:00", tz="UTC")
    assert candles["volume"].tolist() == [30.0, 40.0, 50.0]
    assert candles.attrs == {"timeframe": "1h", "calendar": "24/7", "symbol": "ETHUSD", "source": str(path)}


@pytest.mark.parametrize(
    ("header", "times"),
    [
        ("Timestamp,Open,High,Low,Close,Volume", ["1546300800000", "1546301100000", "1546301400000"]),  # ms
        ("unix,open,high,low,close,volume", ["1546300800", "1546301100", "1546301400"]),  # seconds
        (
            "date,OPEN,HIGH,LOW,CLOSE,VOL",
            ["2019-01-01T01:00:00+01:00", "2019-01-01T01:05:00+01:00", "2019-01-01T01:10:00+01:00"],
        ),
    ],
)
def test_common_layouts_and_time_formats(tmp_path, header, times):
    prices = ["10.0,11.0,9.0,10.5,1.0", "10.5,12.0,10.0,11.0,2.0", "11.0,11.5,10.5,11.2,3.0"]
    candles = wb.read_candles(write_csv(tmp_path, [f"{t},{p}" for t, p in zip(times, prices)], header=header))
    assert candles.index.tolist() == list(pd.date_range("2019-01-01 00:00", periods=3, freq="5min", tz="UTC"))
    assert candles.attrs["timeframe"] == "5m"
    assert candles["close"].tolist() == [10.5, 11.0, 11.2]


def test_tidy_frame_round_trips_through_csv_and_gzip_stream():
    candles = wb.load_candles().iloc[:500]
    buffer = io.BytesIO(gzip.compress(candles.to_csv().encode()))
    with gzip.open(buffer, "rt") as stream:
        again = wb.read_candles(stream)
    pd.testing.assert_frame_equal(again, candles, check_freq=False)


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    rows = [*GOOD[:2], "", replaced(2, "2019-01-01 02:00,3870.0,3900.0,3860.0,3890.0,-8.0")[2]]
    message = candle_error(write_csv(tmp_path, rows))
    assert "line 5 (2019-01-01 02:00 UTC): volume -8.0 is negative" in message


def test_timeframe_is_inferred_despite_a_gap_or_taken_as_given(tmp_path):
    daily = ["2019-01-01,1,2,0.5,1.5,1", "2019-01-02,1.5,2,1,1.8,1", "2019-01-03,1.8,2,1,1.2,1"]
    assert wb.read_candles(write_csv(tmp_path, daily)).attrs["timeframe"] == "1d"
    message = candle_error(write_csv(tmp_path, daily), timeframe="12h")
    assert (
        "line 3 (2019-01-02 00:00 UTC): 1 12h candle missing before it (previous candle 2019-01-01 00:00 UTC)"
        in message
    )


# --- validation errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (replaced(2, "yesterday,3870.0,3900.0,3860.0,3890.0,8.0"), "line 4: timestamp 'yesterday' is not a date"),
        (replaced(2, ",3870.0,3900.0,3860.0,3890.0,8.0"), "line 4: timestamp is missing"),
        (
            replaced(1, "2019-01-01 01:00,3840.0,3810.0,3850.5,3870.0,12.0"),
            "line 3 (2019-01-01 01:00 UTC): high 3810.0 is below low 3850.5",
        ),
        (
            replaced(1, "2019-01-01 01:00,3900.0,3880.0,3830.0,3870.0,12.0"),
            "line 3 (2019-01-01 01:00 UTC): open 3900.0 is outside [low 3830.0, high 3880.0]",
        ),
        (
            replaced(1, "2019-01-01 01:00,3840.0,3880.0,3830.0,3820.0,12.0"),
            "line 3 (2019-01-01 01:00 UTC): close 3820.0 is outside [low 3830.0, high 3880.0]",
        ),
        (replaced(3, "2019-01-01 03:00,3890.0,3895.0,3850.0,,9.5"), "line 5 (2019-01-01 03:00 UTC): close is missing"),
        (
            replaced(3, "2019-01-01 03:00,3890.0,3895.0,0,3860.0,9.5"),
            "line 5 (2019-01-01 03:00 UTC): low 0.0 is not positive",
        ),
        (
            replaced(3, "2019-01-01 03:00,abc,3895.0,3850.0,3860.0,9.5"),
            "line 5 (2019-01-01 03:00 UTC): open 'abc' is not a number",
        ),
        (
            replaced(3, "2019-01-01 03:00,3890.0,inf,3850.0,3860.0,9.5"),
            "line 5 (2019-01-01 03:00 UTC): high inf is not finite",
        ),
        (
            replaced(4, "2019-01-01 04:00,3860.0,3870.0,3820.0,3825.0,-1.0"),
            "line 6 (2019-01-01 04:00 UTC): volume -1.0 is negative",
        ),
        ([*GOOD[:3], GOOD[2], *GOOD[3:]], "line 5 (2019-01-01 02:00 UTC): duplicate: repeats line 4"),
        (
            [*GOOD[:3], GOOD[2].replace("8.0", "9.0"), *GOOD[3:]],
            "line 5 (2019-01-01 02:00 UTC): duplicate: has the same time as, but other values than, line 4",
        ),
        (
            [GOOD[0], GOOD[1], GOOD[4], GOOD[5]],
            "line 4 (2019-01-01 04:00 UTC): 2 1h candles missing before it (previous candle 2019-01-01 01:00 UTC)",
        ),
        (
            [GOOD[0], GOOD[2], GOOD[1], *GOOD[3:]],
            "line 4 (2019-01-01 01:00 UTC): out of order: comes after the later candle 2019-01-01 02:00 UTC",
        ),
        (
            [*GOOD, "2019-01-01 06:30,3835.0,3840.0,3800.0,3835.0,7.0"],
            "line 8 (2019-01-01 06:30 UTC): 90m after the previous candle (2019-01-01 05:00 UTC), not a whole number of 1h candles",
        ),
    ],
)
def test_each_defect_is_an_error_naming_line_time_and_problem(tmp_path, rows, expected):
    message = candle_error(write_csv(tmp_path, rows, name="bad.csv"))
    assert expected in message
    assert message.startswith(f"{tmp_path / 'bad.csv'}: 1 problem in the")


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("time,open,high,low,close", "volume"),
        ("when,open,high,low,close,volume", "time"),
        ("Date,Open,Low,Close,VolumeTo", "high, volume"),
    ],
)
def test_missing_columns_are_named(tmp_path, header, missing):
    message = candle_error(write_csv(tmp_path, ["2019-01-01 00:00,1,2,3,4"], header=header))
    assert f"missing column(s) {missing}; found {header.replace(',', ', ')}" in message


def test_many_bad_rows_quote_the_first_few_and_count_the_rest(tmp_path):
    times = pd.date_range("2019-01-01", periods=30, freq="1h")
    rows = [
        f"{t:%Y-%m-%d %H:%M},10,9,11,10,1" if i % 3 == 0 else f"{t:%Y-%m-%d %H:%M},10,11,9,10,1"
        for i, t in enumerate(times)
    ]
    message = candle_error(write_csv(tmp_path, rows))
    assert "10 problems in the 1h candles" in message
    assert "line 2 (2019-01-01 00:00 UTC): high 9.0 is below low 11.0" in message
    assert "line 14 (2019-01-01 12:00 UTC)" in message and "line 17 " not in message
    assert "... and 5 more" in message
    assert "repair=['drop_invalid']" in message


def test_all_defects_of_one_row_are_named_together(tmp_path):
    message = candle_error(write_csv(tmp_path, replaced(0, "2019-01-01 00:00,-5,3850.0,3790.0,3840.0,-1")))
    assert (
        "line 2 (2019-01-01 00:00 UTC): open -5.0 is not positive; volume -1.0 is negative; open -5.0 is outside"
        in message
    )


def test_mixed_symbols_empty_files_and_unknown_repairs(tmp_path):
    header = "date,symbol,open,high,low,close,volume"
    mixed = write_csv(
        tmp_path, ["2019-01-01 00:00,BTCUSD,1,2,1,2,1", "2019-01-01 01:00,ETHUSD,1,2,1,2,1"], header=header
    )
    assert "column symbol holds 2 symbols (BTCUSD, ETHUSD)" in candle_error(mixed)
    assert "no candles" in candle_error(write_csv(tmp_path, []))
    (tmp_path / "empty.csv").write_text("")
    assert "not a readable CSV file" in candle_error(tmp_path / "empty.csv")
    with pytest.raises(
        ParameterError, match="unknown repair 'dedupe'; choose from drop_invalid, sort, drop_duplicates, fill_gaps"
    ):
        wb.read_candles(write_csv(tmp_path, GOOD), repair="dedupe")
    assert "timeframe '1M' is not understood (monthly candles have no fixed length)" in candle_error(
        write_csv(tmp_path, GOOD), timeframe="1M"
    )


def test_validate_candles_names_rows_of_a_frame_by_position_and_time():
    frame = pd.read_csv(io.StringIO("\n".join([HEADER, *GOOD])), index_col="time", parse_dates=True)
    frame.loc[pd.Timestamp("2019-01-01 02:00"), "low"] = 3950.0
    with pytest.raises(CandleError, match=r"row 2 \(2019-01-01 02:00 UTC\): high 3900.0 is below low 3950.0"):
        wb.validate_candles(frame)
    frame.attrs.update(symbol="BTC/USDT", timeframe="1h")
    tidy = wb.validate_candles(frame, repair=["drop_invalid", "fill_gaps"])
    assert tidy.attrs == {"timeframe": "1h", "calendar": "24/7", "symbol": "BTC/USDT"}
    assert len(tidy) == 6 and tidy.loc["2019-01-01 02:00"].tolist() == [3870.0, 3870.0, 3870.0, 3870.0, 0.0]
    assert str(tidy.index.dtype) == "datetime64[ns, UTC]"  # naive times are taken as UTC
    single = wb.validate_candles(tidy.iloc[:1])  # one candle: the timeframe comes from attrs
    assert single.attrs["timeframe"] == "1h"
    bare = tidy.iloc[:1].copy()
    bare.attrs = {}
    with pytest.raises(CandleError, match="cannot infer the timeframe from 1 candle"):
        wb.validate_candles(bare)


# --- repairs ----------------------------------------------------------------------------------


def test_sort_and_drop_duplicates_keep_the_last_of_equal_times(tmp_path):
    rows = [GOOD[3], GOOD[0], GOOD[2], GOOD[1], GOOD[1].replace("12.0", "13.0"), GOOD[4], GOOD[5]]
    message = candle_error(write_csv(tmp_path, rows), repair="sort")
    assert "duplicate: has the same time as, but other values than, line 5" in message
    candles = wb.read_candles(write_csv(tmp_path, rows), repair=["drop_duplicates", "sort"])
    expected = wb.read_candles(write_csv(tmp_path, GOOD))
    expected.loc["2019-01-01 01:00", "volume"] = 13.0
    pd.testing.assert_frame_equal(candles, expected)


def test_fill_gaps_inserts_flat_zero_volume_candles(tmp_path):
    candles = wb.read_candles(write_csv(tmp_path, [GOOD[0], GOOD[1], GOOD[4], GOOD[5]]), repair="fill_gaps")
    assert len(candles) == 6
    filled = candles.loc["2019-01-01 02:00":"2019-01-01 03:00"]
    assert filled.to_numpy().tolist() == [[3870.0, 3870.0, 3870.0, 3870.0, 0.0]] * 2
    assert candles.loc["2019-01-01 04:00"].tolist() == [3860.0, 3870.0, 3820.0, 3825.0, 11.0]


def test_drop_invalid_then_fill_gaps(tmp_path):
    rows = replaced(2, "2019-01-01 02:00,3870.0,3800.0,3860.0,3890.0,8.0")  # high < low
    message = candle_error(write_csv(tmp_path, rows), repair="drop_invalid")
    assert "line 5 (2019-01-01 03:00 UTC): 1 1h candle missing before it" in message
    assert "repair=['fill_gaps']" in message
    candles = wb.read_candles(write_csv(tmp_path, rows), repair=["fill_gaps", "drop_invalid"])
    assert candles.loc["2019-01-01 02:00"].tolist() == [3870.0, 3870.0, 3870.0, 3870.0, 0.0]
    assert len(candles) == 6


# --- resample ---------------------------------------------------------------------------------


def hourly(values: list[tuple[float, float, float, float, float]], start: str) -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq="1h", tz="UTC", name="time")
    frame = pd.DataFrame(values, index=index, columns=["open", "high", "low", "close", "volume"])
    frame.attrs["timeframe"] = "1h"
    return frame


def test_resample_to_4h_aggregates_and_drops_incomplete_buckets():
    rows = [(10 + i, 12 + i, 9 + i, 11 + i, float(i)) for i in range(12)]  # 01:00 .. 12:00
    result = wb.resample(hourly(rows, "2019-01-01 01:00"), "4h")
    # 00:00 bucket has only 01-03, 12:00 only 12:00: both incomplete. 04:00 = rows 3..6, 08:00 = rows 7..10.
    assert result.index.tolist() == [
        pd.Timestamp("2019-01-01 04:00", tz="UTC"),
        pd.Timestamp("2019-01-01 08:00", tz="UTC"),
    ]
    assert result.to_numpy().tolist() == [[13.0, 18.0, 12.0, 17.0, 18.0], [17.0, 22.0, 16.0, 21.0, 34.0]]
    assert result.attrs["timeframe"] == "4h" and result.index.name == "time"


def test_resample_weekly_starts_on_monday_and_bundled_daily_sums_volume():
    daily = wb.resample(wb.load_candles(), "1d")
    assert daily.index[0] == pd.Timestamp("2017-07-02", tz="UTC")  # 2017-07-01 starts at 11:00
    hours = wb.load_candles().loc["2017-07-02"]
    assert daily.iloc[0].tolist() == [
        hours.open.iloc[0],
        hours.high.max(),
        hours.low.min(),
        hours.close.iloc[-1],
        pytest.approx(hours.volume.sum()),
    ]
    weekly = wb.resample(daily, "1w")
    assert {t.day_name() for t in weekly.index} == {"Monday"}
    assert weekly.index[0] == pd.Timestamp("2017-07-03", tz="UTC")


def test_resample_refuses_finer_or_uneven_timeframes():
    candles = hourly([(10, 12, 9, 11, 1)] * 8, "2019-01-01")
    with pytest.raises(CandleError, match="cannot resample 1h candles to the finer timeframe 15m"):
        wb.resample(candles, "15m")
    with pytest.raises(CandleError, match="90m is not a whole number of 1h candles"):
        wb.resample(candles, "90m")


# --- calendars: markets that close ------------------------------------------------------------

NEW_YORK = "America/New_York"


def fx_hours(first_sunday: str, weeks: int) -> pd.DatetimeIndex:
    """The hourly bars of an FX week, Sunday 17:00 to Friday 17:00 New York, built from the
    wall clock (New York moves to daylight saving time on 2024-03-10)."""
    sunday = pd.Timestamp(first_sunday)
    return pd.DatetimeIndex(
        np.concatenate(
            [
                pd.date_range(sunday + pd.Timedelta(days=7 * week, hours=17), periods=120, freq="1h", tz=NEW_YORK)
                .tz_convert("UTC")
                .as_unit("ns")
                for week in range(weeks)
            ]
        ),
        name="time",
    )


def fx_candles(times: pd.DatetimeIndex, seed: int = 3) -> pd.DataFrame:
    """A EURUSD-like random walk on ``times``, five-decimal prices."""
    rng = np.random.default_rng(seed)
    close = np.round(1.08 + np.cumsum(rng.normal(0, 0.0008, len(times))), 5)
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.0003,
            "low": np.minimum(open_, close) - 0.0003,
            "close": close,
            "volume": rng.uniform(100, 900, len(times)).round(1),
        },
        index=times,
    )


def fx_csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "eurusd_1h.csv"
    frame.to_csv(path, date_format="%Y-%m-%d %H:%M")
    return path


FX_WEEKS = fx_hours("2024-02-25", 4)  # 480 bars, 2024-02-25 22:00 UTC to 2024-03-22 20:00 UTC


def test_fx_week_loads_without_invented_bars_across_daylight_saving_time(tmp_path):
    path = fx_csv(tmp_path, fx_candles(FX_WEEKS))
    weekend = "line 122 (2024-03-03 22:00 UTC): 48 1h candles missing before it (previous candle 2024-03-01 21:00 UTC)"
    assert weekend in candle_error(path)  # the default calendar is 24/7: a weekend is a gap
    candles = wb.read_candles(path, calendar="24/5")
    assert candles.index.equals(FX_WEEKS) and len(candles) == 4 * 120
    assert candles.attrs == {"timeframe": "1h", "calendar": "24/5", "source": str(path)}
    # winter: Friday's last bar opens 21:00 UTC, Sunday's first 22:00; New York's daylight saving
    # time starts on Sunday 2024-03-10, so that week opens at 21:00 UTC and closes at 21:00 UTC
    for last, first in (("2024-03-08 21:00", "2024-03-10 21:00"), ("2024-03-15 20:00", "2024-03-17 21:00")):
        position = candles.index.get_loc(pd.Timestamp(last, tz="UTC"))
        assert candles.index[position + 1] == pd.Timestamp(first, tz="UTC")
    fixed = candle_error(path, calendar="24/5 UTC 22:00")  # the boundaries are a choice, and it matters
    closed = "the 24/5 UTC 22:00 market is closed throughout this 1h candle (closed Friday 22:00 to Sunday 22:00 UTC)"
    assert f"line 242 (2024-03-10 21:00 UTC): {closed}" in fixed


def test_fx_gap_on_a_wednesday_is_still_refused_with_the_row_named(tmp_path):
    frame = fx_candles(FX_WEEKS).drop(pd.Timestamp("2024-03-06 10:00", tz="UTC"))
    message = candle_error(fx_csv(tmp_path, frame), calendar="24/5")
    assert message.splitlines()[1:] == [
        "  line 182 (2024-03-06 11:00 UTC): 1 1h candle missing before it (previous candle 2024-03-06 09:00 UTC)",
        "Fix the data, or repair it deliberately with repair=['fill_gaps'] (see help(workbench.read_candles)).",
    ]
    with pytest.raises(CandleError, match=r"row 180 \(2024-03-06 11:00 UTC\): 1 1h candle missing before it"):
        wb.validate_candles(frame, calendar="24/5")


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("2024-03-02 12:00", 122),  # Saturday
        ("2024-03-01 22:00", 122),  # Friday 17:00 New York in winter: closed
        ("2024-03-15 21:00", 362),  # Friday 17:00 New York in summer time: closed
        ("2024-03-10 20:00", 242),  # Sunday, an hour before the summer-time open
    ],
)
def test_fx_bar_in_closed_hours_is_refused_with_the_row_named(tmp_path, extra, line):
    frame = fx_candles(FX_WEEKS)
    stray = frame.iloc[[0]].set_axis(pd.DatetimeIndex([pd.Timestamp(extra, tz="UTC")], name="time"))
    message = candle_error(fx_csv(tmp_path, pd.concat([frame, stray]).sort_index()), calendar="24/5")
    assert message.splitlines()[1] == (
        f"  line {line} ({extra} UTC): the 24/5 market is closed throughout this 1h candle "
        "(closed Friday 17:00 to Sunday 17:00 America/New_York)"
    )


def test_fill_gaps_on_fx_fills_a_wednesday_but_not_the_weekend(tmp_path):
    frame = fx_candles(FX_WEEKS)
    gappy = frame.drop(pd.date_range("2024-03-06 10:00", periods=3, freq="1h", tz="UTC"))
    candles = wb.read_candles(fx_csv(tmp_path, gappy), calendar="24/5", repair="fill_gaps")
    assert candles.index.equals(FX_WEEKS)  # the three Wednesday hours, and nothing on a weekend
    previous_close = frame.loc["2024-03-06 09:00", "close"]
    assert candles.loc["2024-03-06 10:00":"2024-03-06 12:00"].to_numpy().tolist() == [[previous_close] * 4 + [0.0]] * 3
    assert candles.attrs["calendar"] == "24/5"


def test_the_calendar_travels_with_the_candles_through_resample_and_revalidation():
    candles = wb.validate_candles(fx_candles(FX_WEEKS), calendar="24/5")
    assert wb.validate_candles(candles.iloc[100:300]).attrs["calendar"] == "24/5"  # taken from attrs
    daily = wb.resample(candles, "1d")
    assert daily.attrs["calendar"] == "24/5" and daily.attrs["timeframe"] == "1d"
    # Sunday's two open hours make a (short) Sunday candle; Friday's 21 or 22 are a whole day
    assert daily.index.day_name().tolist()[:7] == [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Sunday",
    ]
    assert len(daily) == 4 * 6 and (daily.index.day_of_week != 5).all()
    friday = candles.loc["2024-03-15"]
    assert daily.loc["2024-03-15"].tolist() == [
        friday.open.iloc[0],
        friday.high.max(),
        friday.low.min(),
        friday.close.iloc[-1],
        pytest.approx(friday.volume.sum()),
    ]
    pd.testing.assert_frame_equal(wb.validate_candles(daily), daily)
    four_hourly = wb.resample(candles.iloc[3:], "4h")  # Sunday 20:00 lost hours of its open part
    assert four_hourly.index[0] == pd.Timestamp("2024-02-26 04:00", tz="UTC")
    assert four_hourly.attrs["calendar"] == "24/5" and len(wb.validate_candles(four_hourly)) == len(four_hourly)
    weekly = wb.resample(candles, "1w")  # the last week lacks Sunday 2024-03-24's evening hours
    assert weekly.index.tolist() == [pd.Timestamp(day, tz="UTC") for day in ("2024-02-26", "2024-03-04", "2024-03-11")]


@pytest.mark.filterwarnings("ignore:Series.values returning:DeprecationWarning")  # inside exchange_calendars
def test_an_exchange_calendar_knows_holidays_and_nights():
    import exchange_calendars

    sessions = exchange_calendars.get_calendar("XNYS").sessions_in_range("2023-11-01", "2024-01-31")
    daily = fx_candles(pd.DatetimeIndex(sessions.tz_localize("UTC"), name="time"))
    candles = wb.validate_candles(daily, calendar="XNYS")
    assert len(candles) == len(sessions) and "2023-12-25" not in candles.index.strftime("%Y-%m-%d")
    with pytest.raises(
        CandleError,
        match=r"row 34 \(2023-12-21 00:00 UTC\): 1 1d candle missing before it "
        r"\(previous candle 2023-12-19 00:00 UTC\)",
    ):
        wb.validate_candles(daily.drop(pd.Timestamp("2023-12-20", tz="UTC")), calendar="XNYS")
    christmas = pd.concat([daily, daily.iloc[[0]].set_axis(pd.DatetimeIndex([pd.Timestamp("2023-12-25", tz="UTC")]))])
    with pytest.raises(
        CandleError,
        match=r"row 37 \(2023-12-25 00:00 UTC\): the XNYS market is closed throughout "
        r"this 1d candle \(closed outside its exchange_calendars sessions\)",
    ):
        wb.validate_candles(christmas.sort_index(), calendar="XNYS")
    # hourly bars on the clock: 09:00 New York holds the 09:30 open, 15:00 the 16:00 close
    hourly = pd.DatetimeIndex(
        [
            t
            for day in sessions[:5]
            for t in pd.date_range(f"{day.date()} 09:00", f"{day.date()} 15:00", freq="1h", tz=NEW_YORK)
            .tz_convert("UTC")
            .as_unit("ns")
        ],
        name="time",
    )
    assert len(wb.validate_candles(fx_candles(hourly), calendar="XNYS")) == 35


def test_bars_per_year_counts_the_bars_a_market_prints():
    assert get_calendar("24/7").bars_per_year("1h") == 8760.0  # the backtest's 365-day year
    assert get_calendar("24/5").bars_per_year("1h") == pytest.approx(120 * 365 / 7)  # 6,257
    assert get_calendar("24/5 UTC 22:00").bars_per_year("4h") == pytest.approx(30 * 365 / 7)
    assert get_calendar("24/5").bars_per_year("1d") == pytest.approx(5 * 365 / 7)
    assert get_calendar("XNYS").bars_per_year("1d") == pytest.approx(251.4, abs=0.1)  # 2015-2024 sessions
    assert get_calendar("XNYS").bars_per_year("1h") == pytest.approx(7 * 251.4, rel=0.01)  # 6.5 hours a session
    assert get_calendar("XNYS").bars_per_year("1w") == pytest.approx(365 / 7)
    assert bars_per_year(wb.load_candles()) == 8760.0
    assert bars_per_year(wb.validate_candles(fx_candles(FX_WEEKS), calendar="24/5")) == pytest.approx(6257.14, abs=0.01)
    bare = fx_candles(FX_WEEKS)  # no attrs: the spacing and 24/7
    assert bars_per_year(bare) == 8760.0


def test_unknown_calendars_are_named():
    with pytest.raises(
        ParameterError,
        match=r"^calendar 'NYSX' is not known; use '24/7', '24/5', '24/5 <time zone> "
        r"<HH:MM>' or an exchange_calendars name such as 'XNYS'$",
    ):
        wb.validate_candles(fx_candles(FX_WEEKS), calendar="NYSX")
    with pytest.raises(ParameterError, match=r"^calendar '24/5 Mars/Olympus 17:00': unknown time zone 'Mars/Olympus'"):
        get_calendar("24/5 Mars/Olympus 17:00")
    with pytest.raises(ParameterError, match=r"^calendar '24/5 UTC 5pm': '5pm' is not a time of day"):
        get_calendar("24/5 UTC 5pm")


def test_channel_on_fx_trades_the_real_bars_only():
    """The 24/5 series and the same bars laid end to end as a gap-free 24/7 series trade alike:
    no invented weekend bar reaches the kernel."""
    fx = wb.validate_candles(fx_candles(fx_hours("2024-01-07", 12), seed=5), calendar="24/5")
    end_to_end = fx.set_axis(pd.date_range(fx.index[0], periods=len(fx), freq="1h", name="time", unit="ns"))
    end_to_end.attrs = {"timeframe": "1h"}
    params = {"entry_window": 24, "exit_window": 12, "direction": "both"}

    def fills(candles):
        # no funding: it settles by the clock, and the two series' clocks differ by design
        result = wb.backtest("channel", candles, params, fees=0.0001, slippage=0.0, funding=None)
        assert len(result.equity) == len(candles)
        return [(candles.index.get_loc(f.time), f.size, f.price, f.kind) for f in result.fills.itertuples()]

    trades = fills(fx)
    assert len(trades) > 20 and trades == fills(end_to_end)


# --- fetch_candles against a loopback Binance -------------------------------------------------

START = pd.Timestamp("2024-01-01", tz="UTC")


def synthetic(count: int, start: pd.Timestamp = START) -> pd.DataFrame:
    """A random-walk hourly series with 2-decimal prices (exact through Binance's strings)."""
    rng = np.random.default_rng(7)
    close = np.round(40_000 + np.cumsum(rng.normal(0, 50, count)), 2)
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.round(np.maximum(open_, close) + 10, 2),
            "low": np.round(np.minimum(open_, close) - 10, 2),
            "close": close,
            "volume": np.round(rng.uniform(1, 100, count), 4),
        },
        index=pd.date_range(start, periods=count, freq="1h", tz="UTC", name="time", unit="ns"),
    )
    frame.attrs["timeframe"] = "1h"
    return frame


@pytest.fixture
def binance():
    with BinanceSpot({"BTC/USDT": synthetic(2500)}) as server:
        yield server


def klines_starts(server: BinanceSpot) -> list[pd.Timestamp]:
    return [pd.Timestamp(int(r.query["startTime"]), unit="ms", tz="UTC") for r in server.requests_to("/api/v3/klines")]


@pytest.mark.integration
def test_fetch_pages_through_more_than_one_page(binance, tmp_path):
    until = START + pd.Timedelta(hours=2500)
    candles = wb.fetch_candles(binance.client(), "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(candles, binance.candles["BTC/USDT"], check_flags=False, check_freq=False)
    assert candles.attrs == {"timeframe": "1h", "calendar": "24/7", "symbol": "BTC/USDT", "source": "binance"}
    assert [r.query["limit"] for r in binance.requests_to("/api/v3/klines")] == ["1000"] * 3
    assert klines_starts(binance) == [START, START + pd.Timedelta(hours=1000), START + pd.Timedelta(hours=2000)]
    cache = pd.read_csv(tmp_path / "binance" / "BTC-USDT_1h.csv")
    assert list(cache.columns) == ["time", "open", "high", "low", "close", "volume"]
    assert cache["time"].iloc[0] == START.value // 10**6 and len(cache) == 2500
    assert [p.name for p in (tmp_path / "binance").iterdir()] == ["BTC-USDT_1h.csv"]  # no temporary left


@pytest.mark.integration
def test_second_fetch_only_asks_for_what_is_new_then_works_offline(binance, tmp_path):
    client = binance.client()
    first = wb.fetch_candles(
        client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=1000), cache_dir=tmp_path
    )
    assert len(first) == 1000 and klines_starts(binance) == [START]
    binance.requests.clear()
    until = START + pd.Timedelta(hours=2500)
    second = wb.fetch_candles(client, "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path)
    assert klines_starts(binance) == [START + pd.Timedelta(hours=1000), START + pd.Timedelta(hours=2000)]
    pd.testing.assert_frame_equal(second, binance.candles["BTC/USDT"], check_flags=False, check_freq=False)
    binance.requests.clear()
    wb.fetch_candles(client, "BTC/USDT", "1h", since=START + pd.Timedelta(hours=5), until=until, cache_dir=tmp_path)
    assert binance.requests == []  # covered by the cache: no request at all

    binance.stop()
    again = wb.fetch_candles(client, "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again, second)  # exchange down, range cached: served without a request
    offline = wb.fetch_candles("binance", "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path, offline=True)
    pd.testing.assert_frame_equal(offline, second)
    everything = wb.fetch_candles("binance", "BTC/USDT", cache_dir=tmp_path, offline=True)
    pd.testing.assert_frame_equal(everything, second)
    with pytest.raises(
        CandleError,
        match=r"offline: the cache .* holds 2024-01-01 00:00 UTC to 2024-04-14 03:00 UTC, so "
        r"binance BTC/USDT 1h candles from 2023-12-01 00:00 UTC to 2024-01-01 00:00 UTC are missing",
    ):
        wb.fetch_candles("binance", "BTC/USDT", "1h", since="2023-12-01", until=until, cache_dir=tmp_path, offline=True)


@pytest.mark.integration
def test_network_failure_after_the_last_closed_candle_serves_what_arrived(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("1h")
    series = synthetic(1003, start=now - pd.Timedelta(hours=1000))  # 1000 closed, then forming, then future
    with BinanceSpot({"BTC/USDT": series}) as server:
        server.fail("/api/v3/klines", 503, after=1)  # the page after the closed candles fails
        with pytest.warns(RuntimeWarning, match=r"binance unreachable \(binance GET .* 503"):
            candles = wb.fetch_candles(server.client(), "BTC/USDT", "1h", since=series.index[0], cache_dir=tmp_path)
    if pd.Timestamp.now(tz="UTC").floor("1h") == now:  # the hour did not turn during the test
        assert len(candles) == 1000 and candles.index[-1] == now - pd.Timedelta(hours=1)


@pytest.mark.integration
def test_network_down_and_cache_short_of_the_range(binance, tmp_path):
    client = binance.client()
    wb.fetch_candles(client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=300), cache_dir=tmp_path)
    binance.stop()  # the one page fetched holds 1000 candles, all cached
    assert (
        len(
            wb.fetch_candles(
                client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=1000), cache_dir=tmp_path
            )
        )
        == 1000
    )
    with pytest.raises(
        CandleError,
        match=r"could not fetch binance BTC/USDT 1h candles \(NetworkError: .*"
        r"the cache .* holds 2024-01-01 00:00 UTC to 2024-02-11 15:00 UTC: candles from 2024-02-11 16:00 UTC on are missing",
    ):
        wb.fetch_candles(
            client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=1001), cache_dir=tmp_path
        )


@pytest.mark.integration
def test_server_errors_and_unknown_symbols_are_clear(binance, tmp_path):
    client = binance.client()
    with pytest.raises(CandleError, match=r"binance has no market 'DOGE/USDT'"):
        wb.fetch_candles(client, "DOGE/USDT", "1h", since=START, cache_dir=tmp_path)
    binance.fail("/api/v3/klines", 503)
    with pytest.raises(
        CandleError,
        match=r"could not fetch binance BTC/USDT 1h candles \(ExchangeNotAvailable: .* 503 .*there is no cache at",
    ):
        wb.fetch_candles(
            client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=10), cache_dir=tmp_path
        )
    assert not (tmp_path / "binance").exists()
    binance.clear_faults()
    binance.fail("/api/v3/klines", 400, {"code": -1120, "msg": "Invalid interval."}, times=1)
    with pytest.raises(
        CandleError, match=r"binance refused the BTC/USDT 1h candle request: binance .*Invalid interval"
    ):
        wb.fetch_candles(
            client, "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=10), cache_dir=tmp_path
        )
    with pytest.raises(CandleError, match="unknown exchange 'binanse'; did you mean binance"):
        wb.fetch_candles("binanse", "BTC/USDT", cache_dir=tmp_path)


@pytest.mark.integration
def test_partial_pages_before_a_failure_are_kept_and_resumed(binance, tmp_path):
    client = binance.client()
    until = START + pd.Timedelta(hours=2500)
    binance.fail("/api/v3/klines", 502, after=1)
    with pytest.raises(CandleError, match="candles from 2024-02-11 16:00 UTC on are missing"):
        wb.fetch_candles(client, "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path)
    binance.clear_faults()
    binance.requests.clear()
    assert len(wb.fetch_candles(client, "BTC/USDT", "1h", since=START, until=until, cache_dir=tmp_path)) == 2500
    assert klines_starts(binance) == [START + pd.Timedelta(hours=1000), START + pd.Timedelta(hours=2000)]


@pytest.mark.integration
def test_still_forming_candle_is_dropped(tmp_path):
    before = pd.Timestamp.now(tz="UTC").floor("1h")
    series = synthetic(60, start=before - pd.Timedelta(hours=50))  # runs 10 hours into the future
    with BinanceSpot({"BTC/USDT": series}) as server:
        candles = wb.fetch_candles(server.client(), "BTC/USDT", "1h", since=series.index[0], cache_dir=tmp_path)
    after = pd.Timestamp.now(tz="UTC").floor("1h")
    assert candles.index[-1] in {before - pd.Timedelta(hours=1), after - pd.Timedelta(hours=1)}
    assert candles.index[0] == series.index[0]
    cached = pd.read_csv(tmp_path / "binance" / "BTC-USDT_1h.csv")
    assert cached["time"].iloc[-1] == candles.index[-1].value // 10**6  # the forming candle is not cached


@pytest.mark.integration
def test_exchange_data_is_validated(tmp_path):
    series = synthetic(30)
    series = series.drop(series.index[10:12])
    series.iloc[20, series.columns.get_loc("high")] = 1.0
    with BinanceSpot({"BTC/USDT": series}) as server:
        with pytest.raises(CandleError) as caught:
            wb.fetch_candles(
                server.client(), "BTC/USDT", "1h", since=START, until=START + pd.Timedelta(hours=30), cache_dir=tmp_path
            )
        assert "row 10 (2024-01-01 12:00 UTC): 2 1h candles missing before it" in str(caught.value)
        assert "row 20 (2024-01-01 22:00 UTC): high 1.0 is below low" in str(caught.value)
        repaired = wb.fetch_candles(
            server.client(),
            "BTC/USDT",
            "1h",
            since=START,
            until=START + pd.Timedelta(hours=30),
            cache_dir=tmp_path,
            repair=["drop_invalid", "fill_gaps"],
        )
    assert len(repaired) == 30 and repaired.loc["2024-01-01 22:00", "volume"] == 0.0


def test_import_workbench_stays_light():
    code = "import sys, workbench, workbench.data; print(sorted(m for m in ('ccxt', 'vectorbt', 'numba') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_default_cache_lives_in_the_workbench_home(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    expected = tmp_path / "cache" / "candles" / "binance" / "BTC-USDT_1h.csv"
    with pytest.raises(CandleError, match=f"offline: there is no cache at {expected}"):
        wb.fetch_candles("binance", "BTC/USDT", offline=True)


# --- fetch_funding: the real ccxt.binanceusdm and ccxt.gate against loopback venues -----------

PERP = "BTC/USDT:USDT"
F_START, F_STOP = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")  # 2193 settlements
FUNDING_PATHS = {"binanceusdm": "/fapi/v1/fundingRate", "gate": "/api/v4/futures/usdt/funding_rate"}


def _funding_server(exchange_id: str):
    from loopback_exchange import Binance, Gate, serve_binance_funding, serve_gate_funding

    server = Binance("key", "secret", {}) if exchange_id == "binanceusdm" else Gate("key", "secret", {})
    server.exchange_id = exchange_id
    return server, (serve_binance_funding if exchange_id == "binanceusdm" else serve_gate_funding)


@pytest.fixture(params=["binanceusdm", "gate"])
def venue(request):
    server, serve = _funding_server(request.param)
    with server:
        server.series = serve(server)[PERP]  # synthetic rates every 8 hours (loopback_exchange.synthetic_funding)
        yield server


@pytest.fixture
def binanceusdm():
    server, serve = _funding_server("binanceusdm")
    with server:
        server.series = serve(server)[PERP]
        yield server


def funding_client(server):
    from loopback_exchange import funding_client

    return funding_client(server)


def settled(server, start: pd.Timestamp, stop: pd.Timestamp) -> pd.Series:
    series = server.series
    return series[(series.index >= start) & (series.index < stop)]


def funding_requests(server) -> list[dict[str, str]]:
    return [r.query for r in server.requests_to(FUNDING_PATHS[server.exchange_id])]


def ms(time: pd.Timestamp) -> int:
    return time.value // 10**6


@pytest.mark.integration
def test_fetch_funding_pages_through_more_than_one_page(venue, tmp_path):
    rates = fetch_funding(venue.exchange_id, PERP, F_START, F_STOP, cache_dir=tmp_path, client=funding_client(venue))
    expected = settled(venue, F_START, F_STOP)
    assert len(expected) == 2193
    pd.testing.assert_series_equal(rates, expected, check_freq=False)
    assert rates.name == "funding_rate" and str(rates.index.tz) == "UTC" and rates.index.name == "time"
    assert rates.attrs == {"symbol": PERP, "source": venue.exchange_id}
    requests = funding_requests(venue)
    assert [r["limit"] for r in requests] == ["1000"] * 3
    if venue.exchange_id == "binanceusdm":  # oldest first: the cursor moves past each page's last settlement
        assert [int(r["startTime"]) for r in requests] == [
            ms(F_START),
            ms(expected.index[999]) + 1,
            ms(expected.index[1999]) + 1,
        ]
        assert {r["endTime"] for r in requests} == {str(ms(F_STOP) - 1)}
    else:  # newest first: each page ends before the first settlement of the page after it
        assert {r["from"] for r in requests} == {str(ms(F_START) // 1000)}
        assert [int(r["to"]) for r in requests] == [
            ms(F_STOP) // 1000 - 1,
            ms(expected.index[1193]) // 1000 - 1,
            ms(expected.index[193]) // 1000 - 1,
        ]
    cache = tmp_path / venue.exchange_id / "BTC-USDT-USDT_funding.csv"
    assert cache.read_text().splitlines()[:2] == [f"# checked {ms(F_START)} {ms(F_STOP)}", "time,funding_rate"]
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary left


@pytest.mark.integration
def test_fetch_funding_reuses_the_cache_offline_and_fetches_only_the_missing_tail(venue, tmp_path):
    client, middle = funding_client(venue), pd.Timestamp("2025-01-01", tz="UTC")
    first = fetch_funding(venue.exchange_id, PERP, F_START, middle, cache_dir=tmp_path, client=client)
    pd.testing.assert_series_equal(first, settled(venue, F_START, middle), check_freq=False)
    venue.requests.clear()
    second = fetch_funding(venue.exchange_id, PERP, F_START, F_STOP, cache_dir=tmp_path, client=client)
    pd.testing.assert_series_equal(second, settled(venue, F_START, F_STOP), check_freq=False)
    requests = funding_requests(venue)
    assert len(requests) == 2  # 1095 settlements after the cache: two pages, nothing before it again
    starts = [int(r["startTime"]) if "startTime" in r else int(r["from"]) * 1000 for r in requests]
    assert min(starts) == ms(middle)
    venue.requests.clear()
    inside = fetch_funding(venue.exchange_id, PERP, "2024-03-01", "2025-06-01 04:00", cache_dir=tmp_path, client=client)
    assert venue.requests == [] and inside.index[0] == pd.Timestamp("2024-03-01", tz="UTC")

    venue.stop()  # the venue is down: a range the cache covers is served without a request
    again = fetch_funding(venue.exchange_id, PERP, F_START, F_STOP, cache_dir=tmp_path, client=client)
    pd.testing.assert_series_equal(again, second)

    class Unreachable:
        id = venue.exchange_id

        def __getattr__(self, name):
            raise AssertionError(f"the network was used: {name}")

    pd.testing.assert_series_equal(
        fetch_funding(venue.exchange_id, PERP, F_START, F_STOP, cache_dir=tmp_path, client=Unreachable()), second
    )
    everything = fetch_funding(venue.exchange_id, PERP, cache_dir=tmp_path, offline=True)
    pd.testing.assert_series_equal(everything, second)
    label = f"{venue.exchange_id} {PERP} funding rates"
    with pytest.raises(
        CandleError,
        match=rf"^offline: the cache .* covers 2024-01-01 00:00 UTC to 2026-01-01 00:00 UTC, "
        rf"so {re.escape(label)} from 2023-12-01 00:00 UTC to 2024-01-01 00:00 UTC are missing; fetch once",
    ):
        fetch_funding(venue.exchange_id, PERP, "2023-12-01", F_STOP, cache_dir=tmp_path, offline=True)
    with pytest.raises(
        CandleError,
        match=rf"^could not fetch {re.escape(label)} \(NetworkError: .*\), and the cache .* "
        r"covers 2024-01-01 00:00 UTC to 2026-01-01 00:00 UTC: from 2026-01-01 00:00 UTC to 2026-02-01 "
        r"00:00 UTC are missing; offline=True serves the cache as it is$",
    ) as caught:
        fetch_funding(venue.exchange_id, PERP, F_START, "2026-02-01", cache_dir=tmp_path, client=client)
    assert "\n" not in str(caught.value)


@pytest.mark.integration
def test_a_backtest_takes_fetched_funding_unchanged_and_pays_it(binanceusdm, tmp_path):
    from _bars import FREE, bars

    candles = bars([(100.0, 100.0, 100.0, 100.0)] * 240, start="2024-03-01")  # ten flat days of hours
    rates = fetch_funding(
        "binanceusdm",
        PERP,
        candles.index[0],
        candles.index[-1] + pd.Timedelta(hours=1),
        cache_dir=tmp_path,
        client=funding_client(binanceusdm),
    )
    assert len(rates) == 30 and rates.abs().sum() > 0
    short = wb.backtest("rules", candles, {"rules": "sell 10 units when close >= 100"}, **FREE, funding=rates)
    opened = short.fills["time"].iloc[0]
    held = rates[rates.index > opened]  # each settlement after the open is paid on 10 units at 100
    assert len(held) == 29
    assert short.metrics["funding_paid"] == pytest.approx(-10 * 100 * held.sum())  # a short receives a positive rate
    assert short.equity.iloc[-1] == pytest.approx(1000 + 10 * 100 * held.sum())
    levered = wb.backtest(
        "rules", candles, {"rules": "leverage 2\nbuy 10 units when close >= 100"}, **FREE, funding=rates
    )
    assert levered.metrics["funding_paid"] == pytest.approx(10 * 100 * held.sum())
    assert short.settings["funding"] == {str(t): r for t, r in rates.items()}  # stored to reproduce the run


@pytest.mark.integration
def test_fetch_funding_bad_inputs_and_venue_failures_are_one_line_errors(binanceusdm, tmp_path):
    client = funding_client(binanceusdm)
    fetch = fetch_funding
    cases = [
        (
            ParameterError,
            r"^start='soon' is not a time",
            lambda: fetch("binanceusdm", PERP, "soon", cache_dir=tmp_path),
        ),
        (
            ParameterError,
            r"^stop='2024-01-01' is not after start='2024-02-01'$",
            lambda: fetch("binanceusdm", PERP, "2024-02-01", "2024-01-01", cache_dir=tmp_path),
        ),
        (
            ParameterError,
            r"^symbol='BTCUSDT' is not a market symbol; perpetuals look like 'BTC/USDT:USDT'$",
            lambda: fetch("binanceusdm", "BTCUSDT", cache_dir=tmp_path),
        ),
        (ParameterError, r"^exchange_id=None is not an exchange id", lambda: fetch(None, PERP, cache_dir=tmp_path)),
        (
            ParameterError,
            r"^client is a 'binanceusdm' client, not 'gate'",
            lambda: fetch("gate", PERP, cache_dir=tmp_path, client=client),
        ),
        (
            CandleError,
            r"^binanceusdm has no perpetual 'DOGE/USDT:USDT' \(.*\); perpetual symbols look like",
            lambda: fetch("binanceusdm", "DOGE/USDT:USDT", F_START, F_STOP, cache_dir=tmp_path, client=client),
        ),
        (
            CandleError,
            r"^unknown exchange 'binanse'; did you mean binance",
            lambda: fetch("binanse", PERP, F_START, F_STOP, cache_dir=tmp_path),
        ),
        (
            CandleError,
            r"^binanceusdm has no BTC/USDT:USDT funding settlements between 2024-01-01 01:00 UTC and "
            r"2024-01-01 07:00 UTC$",
            lambda: fetch(
                "binanceusdm", PERP, "2024-01-01 01:00", "2024-01-01 07:00", cache_dir=tmp_path, client=client
            ),
        ),
    ]
    for kind, pattern, call in cases:
        with pytest.raises(kind, match=pattern) as caught:
            call()
        assert "\n" not in str(caught.value), pattern

    other = tmp_path / "other"
    binanceusdm.fail("/fapi/v1/fundingRate", 503, "Service Unavailable\n<html>busy</html>")
    with pytest.raises(
        CandleError,
        match=r"^could not fetch binanceusdm BTC/USDT:USDT funding rates \(ExchangeNotAvailable"
        r": .* 503 .*\), and there is no cache at .*: from 2024-01-01 00:00 UTC to 2026-01-01 00:00 UTC "
        r"are missing$",
    ) as caught:
        fetch("binanceusdm", PERP, F_START, F_STOP, cache_dir=other, client=client)
    assert "\n" not in str(caught.value) and not (other / "binanceusdm").exists()
    binanceusdm.clear_faults()
    binanceusdm.fail(
        "/fapi/v1/fundingRate", 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, times=1
    )
    with pytest.raises(CandleError, match=r"^binanceusdm refused the BTC/USDT:USDT funding-rate request: .*-1130"):
        fetch("binanceusdm", PERP, F_START, F_STOP, cache_dir=other, client=client)
    broken = other / "binanceusdm" / "BTC-USDT-USDT_funding.csv"
    broken.parent.mkdir(parents=True)
    broken.write_text("time,funding_rate\n1,0.1\n")
    with pytest.raises(CandleError, match=r"^the funding cache .* is unreadable \(.*\); delete it to fetch again$"):
        fetch("binanceusdm", PERP, F_START, F_STOP, cache_dir=other, client=client)


@pytest.mark.integration
def test_pages_before_a_failure_are_kept_and_the_rest_fetched_later(binanceusdm, tmp_path):
    client = funding_client(binanceusdm)
    binanceusdm.fail("/fapi/v1/fundingRate", 502, after=1)
    expected = settled(binanceusdm, F_START, F_STOP)
    resume = expected.index[1000]  # the first page held settlements 0 to 999
    with pytest.raises(
        CandleError, match=rf"covers 2024-01-01 00:00 UTC to {re.escape(format_utc(expected.index[999]))}"
    ):
        fetch_funding("binanceusdm", PERP, F_START, F_STOP, cache_dir=tmp_path, client=client)
    binanceusdm.clear_faults()
    binanceusdm.requests.clear()
    again = fetch_funding("binanceusdm", PERP, F_START, F_STOP, cache_dir=tmp_path, client=client)
    pd.testing.assert_series_equal(again, expected, check_freq=False)
    assert ms(expected.index[999]) < int(funding_requests(binanceusdm)[0]["startTime"]) <= ms(resume)


def format_utc(time: pd.Timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M") + " UTC"


@pytest.mark.integration
def test_the_loopback_funding_endpoints_are_as_strict_as_the_venues():
    import requests

    for exchange_id in ("binanceusdm", "gate"):
        server, serve = _funding_server(exchange_id)
        now = pd.Timestamp("2024-03-01 12:00", tz="UTC")
        server.clock = now.timestamp
        with server:
            series = serve(server)[PERP]
            assert series.attrs["source"].startswith("synthetic")
            url = server.url + FUNDING_PATHS[exchange_id]
            if exchange_id == "binanceusdm":
                newest = requests.get(url, params={"symbol": "BTCUSDT"}).json()
                assert len(newest) == 200 and newest[-1]["fundingTime"] == ms(
                    pd.Timestamp("2024-03-01 08:00", tz="UTC")
                )
                assert set(newest[0]) == {"symbol", "fundingTime", "fundingRate", "markPrice"}
                page = requests.get(url, params={"symbol": "BTCUSDT", "startTime": ms(F_START), "limit": 3}).json()
                assert [r["fundingTime"] for r in page] == [
                    ms(t) for t in series[F_START:].index[:3]
                ]  # inclusive, ascending
                assert page[0]["fundingRate"] == f"{series[F_START]:.8f}"
                assert requests.get(url, params={"symbol": "BTCUSDT", "limit": 1001}).json()["code"] == -1130
                assert requests.get(url, params={"symbol": "ETHUSDT"}).json() == {
                    "code": -1121,
                    "msg": "Invalid symbol.",
                }
            else:
                page = requests.get(
                    url, params={"contract": "BTC_USDT", "from": ms(F_START) // 1000, "limit": 3}
                ).json()
                assert [r["t"] for r in page] == [ms(t) // 1000 for t in series[:now].index[-3:][::-1]]  # newest first
                assert isinstance(page[0]["r"], str) and float(page[0]["r"]) == series[:now].iloc[-1]
                assert (
                    requests.get(url, params={"contract": "BTC_USDT", "limit": 1001}).json()["label"]
                    == "INVALID_PARAM_VALUE"
                )
                assert requests.get(url, params={"contract": "ETH_USDT"}).json()["label"] == "CONTRACT_NOT_FOUND"
                assert requests.get(url).json()["label"] == "MISSING_REQUIRED_PARAM"
