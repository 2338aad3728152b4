"""The backtest's edge cases, each pinned on hand-made candles: the position limit on both
sides, bad settings refused, liquidation of unleveraged shorts, ruin, a stop and a
liquidation in one gap, duplicate candles, one-line CLI errors, maintenance margin tiers and
the mark price (liquidation as the venues compute it), and a numba cache that follows the engine."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from _bars import FREE, bars

import workbench as wb
from workbench.errors import CandleError, ParameterError

MMR = 0.005  # the default maintenance margin rate


def _quiet_backtest(*args, **kwargs):
    """A backtest that is expected to be ruined: its warning is asserted on elsewhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return wb.backtest(*args, **kwargs)


def _peak_notional(result) -> float:
    """The largest absolute notional the position reached at any fill."""
    held = result.fills["size"].cumsum()
    return float((held * result.fills["price"]).abs().max())


# -- the position limit caps the absolute notional, long and short --------------------------
RISING = bars([(100, 100, 100, 100)] + [(100 + i, 103 + i, 100 + i, 101 + i) for i in range(30)])
FALLING = bars([(100, 100, 100, 100)] + [(100 - i, 100 - i, 97 - i, 99 - i) for i in range(30)])
MM_BOTH = {"spread": 2.0, "order_size": 0.1, "max_inventory": 1.0, "inventory": "both"}
CAP = {"max_position_size": 2000}


@pytest.mark.parametrize("candles, side", [(RISING, "short"), (FALLING, "long")])
def test_market_making_caps_the_inventory_notional_on_both_sides(candles, side):
    # rising bars hit only the ask (the inventory grows short), falling ones only the bid
    free = wb.backtest("market_making", candles, MM_BOTH, fees=0.0, slippage=0.0, init_cash=10_000)
    assert _peak_notional(free) > 9000  # without the limit the inventory grows to max_inventory
    capped = wb.backtest("market_making", candles, MM_BOTH, risk=CAP, fees=0.0, slippage=0.0, init_cash=10_000)
    assert _peak_notional(capped) == pytest.approx(2000, rel=1e-12)
    assert np.sign(capped.position.iloc[-1]) == (-1 if side == "short" else 1)


def test_market_making_caps_a_reversal_through_flat():
    # bar 1 sells at the ask (101); bar 2's bid (99.99) buys more than the short: it closes it
    # and the rest opens a long, which must fit the limit too
    candles = bars([(100, 100, 100, 100), (100, 101.5, 100, 101), (101, 101, 95, 96)])
    params = {**MM_BOTH, "order_size": 0.3, "max_inventory": 0.05}
    free = wb.backtest("market_making", candles, params, fees=0.0, slippage=0.0, init_cash=10_000)
    capped = wb.backtest(
        "market_making", candles, params, risk={"max_position_size": 300}, fees=0.0, slippage=0.0, init_cash=10_000
    )
    bid = 101 * 0.99
    assert free.fills["size"].tolist()[0] == pytest.approx(-5)
    assert free.position.iloc[-1] * bid > 450  # the free reversal ends beyond the limit
    assert capped.fills["size"].tolist()[0] == pytest.approx(-300 / 101)
    assert capped.position.iloc[-1] * bid == pytest.approx(300)


CHANNEL_UP = bars([(10, 11, 9, 10)] * 3 + [(10, 12, 10, 11.5), (12, 13, 11, 12.5), (12.5, 13, 12, 12.8)])
CHANNEL_DOWN = bars([(10, 11, 9, 10)] * 3 + [(10, 10, 8, 8.5), (8, 9, 7, 7.5), (7.5, 8, 7, 7.2)])


@pytest.mark.parametrize("candles, direction, price", [(CHANNEL_UP, "long", 12.0), (CHANNEL_DOWN, "short", 8.0)])
def test_channel_caps_the_notional_on_both_sides(candles, direction, price):
    params = {"entry_window": 3, "exit_window": 2, "direction": direction}
    result = wb.backtest("channel", candles, params, risk={"max_position_size": 500}, **FREE)
    assert abs(result.fills["size"].iloc[0]) * price == pytest.approx(500)


@pytest.mark.parametrize("side, candles, price", [("buy", CHANNEL_UP, 12.0), ("sell", CHANNEL_DOWN, 8.0)])
@pytest.mark.parametrize("size", ["100%", "1000 units"])
def test_rules_cap_the_notional_on_both_sides(side, candles, price, size):
    rules = f"{side} {size} when {'close > 11' if side == 'buy' else 'close < 9'}"
    result = wb.backtest("rules", candles, {"rules": rules}, risk={"max_position_size": 500}, **FREE)
    assert abs(result.fills["size"].iloc[0]) * price == pytest.approx(500)


def test_ema_reversal_caps_its_long_ladder_and_cannot_short():
    from workbench.strategies import kernel_for

    candles = bars([(100, 100, 100, 100)] * 2 + [(100, 100, 96, 97)])
    params = {"ema_window": 2, "dip_levels": [1.0, 2.0], "take_profit": [50.0], "leverage": 5}
    free = wb.backtest("ema_reversal", candles, params, **FREE)
    capped = wb.backtest("ema_reversal", candles, params, risk={"max_position_size": 600}, **FREE)
    assert _peak_notional(free) > 4000
    assert _peak_notional(capped) == pytest.approx(600)
    assert not kernel_for("ema_reversal").can_short(params)  # a long-only template: no short side


# -- settings: partial fee mappings and a maintenance margin that leaves no room -------------


@pytest.mark.parametrize("fees, missing", [({"maker": 0.001}, "taker"), ({"taker": 0.001}, "maker")])
def test_a_partial_fee_mapping_is_refused(fees, missing):
    with pytest.raises(ParameterError, match=f"fees: .* has no '{missing}' rate; give both 'maker' and 'taker'"):
        wb.backtest("channel", CHANNEL_UP, fees=fees)


def test_a_maintenance_margin_at_or_above_one_over_leverage_is_refused():
    params = {"ema_window": 2, "dip_levels": [1.0], "take_profit": [1.0], "leverage": 50}
    message = (
        r"maintenance_margin: 0.02 is not allowed with leverage 50; expected a number from 0 to below "
        r"1/leverage = 0.02"
    )
    with pytest.raises(ParameterError, match=message):
        wb.backtest("ema_reversal", CHANNEL_UP, params, maintenance_margin=0.02)
    with pytest.raises(ParameterError, match="with leverage 50"):  # a sweep checks every combination
        wb.sweep("ema_reversal", CHANNEL_UP, {**params, "leverage": [2, 50]}, maintenance_margin=0.02, progress=False)
    ok = wb.backtest("ema_reversal", CHANNEL_UP, params, maintenance_margin=0.0199)
    assert ok.metrics["liquidations"] == 0


# -- unleveraged shorts are liquidated; ruin stops the run ----------------------------------
SHORT_THEN_SQUEEZE = bars(
    [(10, 11, 9, 10)] * 3
    + [
        (10, 10, 8, 8.5),  # 3: close below the channel: sell at the next open
        (8, 9, 7.5, 8.5),  # 4: short at 8
        (8.5, 16.5, 8.5, 16),  # 5: the high passes 8 * (2 - mmr) = 15.96: liquidated
        (16, 17, 15, 16),
        (16, 17, 6, 6.5),  # 7: close below the channel again: would sell
        (6, 6, 5, 5.5),
    ]
)


def test_an_unleveraged_short_is_liquidated_and_a_full_size_one_ruins_the_account():
    params = {"entry_window": 3, "exit_window": 3, "direction": "short"}
    with pytest.warns(
        RuntimeWarning,
        match=r"channel: the account was ruined at 2024-01-01 05:00:00\+00:00 by a "
        r"liquidation fill .*nothing is traded after it",
    ):
        result = wb.backtest("channel", SHORT_THEN_SQUEEZE, params, **FREE)
    units = 1000 / 8
    assert [
        (k, round(s, 9), p)
        for k, s, p in zip(result.fills["kind"].astype(str), result.fills["size"], result.fills["price"])
    ] == [("entry", -units, 8.0), ("liquidation", units, 8 * (2 - MMR))]
    assert result.metrics["ruined"] == 1 and result.ruined_at == SHORT_THEN_SQUEEZE.index[5]
    assert result.metrics["liquidation_loss"] == pytest.approx(1000)
    assert result.metrics["fees_paid"] == 0  # the margin lost is not a fee
    assert result.fills["fee"].iloc[-1] == pytest.approx(1000 * MMR)  # what the exchange kept
    # flat at the ruined value from the ruin on (bar 7's signal is not traded), never below zero
    assert result.equity.iloc[5:].tolist() == pytest.approx([0.0] * 4, abs=1e-9)
    assert (result.equity >= -1e-9).all()
    assert result.metrics["total_return"] == pytest.approx(-1) and result.metrics["cagr"] == -1
    assert result.metrics["trades"] == 1 and result.trades["pnl"].tolist() == pytest.approx([-1000])
    assert "ruined_at=" in repr(result)
    row = wb.sweep("channel", SHORT_THEN_SQUEEZE, params, progress=False, **FREE).iloc[0]
    assert bool(row["ruined"]) and row["final_equity"] == result.metrics["final_equity"]


def test_a_half_size_unleveraged_short_loses_its_margin_and_trades_on():
    params = {"entry_window": 3, "exit_window": 3, "direction": "short", "position_size": 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # not ruined: no warning
        result = wb.backtest("channel", SHORT_THEN_SQUEEZE, params, **FREE)
    assert list(result.fills["kind"].astype(str)) == ["entry", "liquidation", "entry"]
    assert result.metrics["ruined"] == 0 and result.ruined_at is None
    assert result.equity.iloc[5] == pytest.approx(500)  # the other half of the account stays
    assert result.fills["size"].iloc[-1] == pytest.approx(-0.5 * 500 / 6)  # bar 7's signal sells at bar 8


def test_an_unleveraged_long_is_never_liquidated_nor_ruined():
    crash = bars([(10, 11, 9, 10)] * 3 + [(10, 12, 10, 11.5), (12, 12, 0.01, 0.02), (0.02, 0.03, 0.01, 0.02)])
    result = wb.backtest("channel", crash, {"entry_window": 3, "exit_window": 3}, **FREE)
    assert result.metrics["liquidations"] == 0 and result.metrics["ruined"] == 0
    assert result.equity.min() > 0


def test_rules_short_at_leverage_1_is_liquidated_like_a_perpetual():
    result = _quiet_backtest("rules", SHORT_THEN_SQUEEZE, {"rules": "sell 100% when close < 9"}, **FREE)
    assert list(result.fills["kind"].astype(str)) == ["entry", "liquidation"]
    assert result.fills["price"].iloc[-1] == pytest.approx(8 * (2 - MMR))
    assert result.metrics["ruined"] == 1 and (result.equity >= -1e-9).all()


def test_market_making_short_inventory_is_liquidated_and_a_ruined_account_stops_quoting():
    squeeze = bars(
        [
            (100, 100, 100, 100),
            (100, 101.5, 100, 101),  # 1: the ask sells 10 at 101
            (101, 250, 101, 240),
            (240, 245, 230, 240),
            (240, 245, 230, 240),
        ]
    )
    params = {**MM_BOTH, "order_size": 1.0}
    result = _quiet_backtest("market_making", squeeze, params, **FREE)
    assert result.fills["kind"].astype(str).tolist() == ["entry", "liquidation"]
    assert result.fills["price"].iloc[-1] == pytest.approx(101 * (2 - MMR))
    assert result.metrics["ruined"] == 1 and result.equity.iloc[-1] == pytest.approx(0, abs=1e-9)


def test_a_leveraged_liquidation_of_the_whole_account_is_a_ruin():
    candles = bars([(100, 100, 100, 100)] * 2 + [(100, 100, 98.5, 99), (99, 99, 80, 85), (85, 95, 60, 90)])
    params = {"ema_window": 2, "dip_levels": [1.0], "take_profit": [5.0], "stop_loss": 50.0, "leverage": 10}
    with pytest.warns(RuntimeWarning, match="ema_reversal: the account was ruined"):
        result = wb.backtest("ema_reversal", candles, params, **FREE)
    assert result.fills["kind"].astype(str).tolist() == ["entry", "liquidation"]
    assert result.metrics["ruined"] == 1 and len(result.fills) == 2  # bar 4's dip is not bought


# -- a bar that opens through both the stop and the liquidation price ------------------------
DIP_THEN_GAP = [(100, 100, 100, 100)] * 2 + [(100, 100, 98.5, 99)]  # a long at 99 (the 1% dip)
LEVERED = {"ema_window": 2, "dip_levels": [1.0], "take_profit": [5.0], "leverage": 10}
LIQ = 99 * (1 - 1 / 10 + MMR)  # 89.595


def test_a_gap_through_both_fills_the_nearer_stop_at_the_open():
    candles = bars([*DIP_THEN_GAP, (85, 86, 84, 85)])  # opens below the stop (94.05) and the liquidation
    result = _quiet_backtest("ema_reversal", candles, {**LEVERED, "stop_loss": 5.0}, **FREE)
    last = result.fills.iloc[-1]
    assert last["kind"] == "stop_loss" and last["price"] == 85.0  # the resting stop triggers first
    assert result.metrics["liquidations"] == 0


def test_a_gap_through_both_liquidates_at_the_liquidation_price_when_it_is_nearer():
    candles = bars([*DIP_THEN_GAP, (85, 86, 70, 75)])  # opens below both; the stop (79.2) is further
    result = _quiet_backtest("ema_reversal", candles, {**LEVERED, "stop_loss": 20.0}, **FREE)
    last = result.fills.iloc[-1]
    assert last["kind"] == "liquidation" and last["price"] == pytest.approx(LIQ)


def test_a_bar_reaching_both_inside_it_takes_the_nearer():
    candles = bars([*DIP_THEN_GAP, (95, 96, 70, 75)])  # opens above both, trades through both
    near_stop = wb.backtest("ema_reversal", candles, {**LEVERED, "stop_loss": 5.0}, **FREE)
    assert near_stop.fills.iloc[-1]["kind"] == "stop_loss"
    assert near_stop.fills.iloc[-1]["price"] == pytest.approx(99 * 0.95)
    near_liq = _quiet_backtest("ema_reversal", candles, {**LEVERED, "stop_loss": 20.0}, **FREE)
    assert near_liq.fills.iloc[-1]["kind"] == "liquidation"


def test_rules_short_stop_nearer_than_the_liquidation_fills_first_in_a_gap():
    rules = "leverage 10\nsell 100% when close < 9 stop_loss 5%"
    gap = bars([(10, 11, 9, 10)] * 3 + [(10, 10, 8, 8.5), (8, 8.2, 7.9, 8.1), (9.5, 9.6, 9.4, 9.5)])
    result = _quiet_backtest("rules", gap, {"rules": rules}, **FREE)
    last = result.fills.iloc[-1]
    assert last["kind"] == "stop_loss" and last["price"] == 9.5  # stop 8.4, liquidation 8.76: the open


# -- candles with a duplicate time, and CLI errors on one line ------------------------------


def _write(path, rows: list[str]) -> str:
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return str(path)


def test_a_duplicate_time_with_other_values_is_a_candle_error_naming_both_lines(tmp_path):
    path = _write(
        tmp_path / "dup.csv",
        [
            "2024-01-01 00:00,1,2,1,1.5,10",
            "2024-01-01 01:00,1,2,1,1.5,10",
            "2024-01-01 01:00,1,2,1,1.5,x",
            "2024-01-01 02:00,1,2,1,1.5,10",
        ],
    )
    with pytest.raises(CandleError) as caught:
        wb.read_candles(path)
    assert (
        "line 4 (2024-01-01 01:00 UTC): volume 'x' is not a number; duplicate: has the same time as, but "
        "other values than, line 3" in str(caught.value)
    )
    assert "2 problems" in str(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    path = _write(
        tmp_path / "dup.csv",
        [
            "2024-01-01 00:00,1,2,1,1.5,10",
            "2024-01-01 01:00,1,2,1,1.5,10",
            "2024-01-01 01:00,1,3,1,1.5,10",
            "2024-01-01 02:00,1,2,1,1.5,10",
        ],
    )
    for args, expected in [
        (
            ["backtest", "channel", "--candles", path],
            f"workbench backtest: error: {path}: 1 problem in the 1h candles: line 4 (2024-01-01 01:00 UTC): "
            "duplicate: has the same time as, but other values than, line 3; Fix the data",
        ),
        (["backtest", "channel"], "workbench backtest: error: the following arguments are required: --candles"),
    ]:
        run = _cli(*args)
        assert run.returncode == 2
        assert run.stderr.count("\n") == 1 and run.stderr.startswith(expected), run.stderr


def test_an_error_about_a_changed_frame_names_the_file_it_was_read_from(tmp_path):
    path = _write(tmp_path / "ok.csv", [f"2024-01-01 {h:02d}:00,1,2,1,1.5,10" for h in range(6)])
    candles = wb.read_candles(path)
    candles.loc[candles.index[3], "high"] = 0.5
    with pytest.raises(
        CandleError,
        match=rf"^candles DataFrame \(from {path}\): 1 problem .*\n  row 3 "
        r"\(2024-01-01 03:00 UTC\): high 0.5 is below low 1.0",
    ):
        wb.backtest("channel", candles)
    bare = pd.DataFrame(candles)
    bare.attrs = {}
    with pytest.raises(CandleError, match=r"^candles DataFrame: 1 problem"):
        wb.backtest("channel", bare)


# -- maintenance margin tiers: the venue's exact liquidation price -------------------------
# two tiers: 1% below 5,000 of notional, 2% above (amount 50 = 5,000 x (2% - 1%): continuous)
TIERS = [(0, 0.01, 0), (5_000, 0.02, 50)]
DIPPED = bars([*DIP_THEN_GAP, (95, 96, 80, 85)])  # a long at 99 (leverage 10), then a fall through its liquidation
SHORTED = bars([(10, 11, 9, 10)] * 3 + [(10, 10, 8, 8.5), (8, 8.2, 7.9, 8.1), (9.5, 9.6, 9.4, 9.5)])
FAR_STOP = {**LEVERED, "stop_loss": 50.0}


def _long_liquidation(notional, margin, units, rate, amount):
    # margin + units * (P - entry) = units * P * rate - amount, solved for P
    return (notional - margin - amount) / (units * (1 - rate))


def _short_liquidation(notional, margin, units, rate, amount):
    # margin - units * (P - entry) = units * P * rate - amount, solved for P
    return (notional + margin + amount) / (units * (1 + rate))


@pytest.mark.parametrize(
    "cash, rate, amount",
    [
        (1000.0, 0.02, 50.0),  # notional 10,000: tier 2
        (400.0, 0.01, 0.0),
    ],
)  # notional 4,000: tier 1
def test_a_tiered_long_is_liquidated_where_the_venue_computes_it(cash, rate, amount):
    result = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **{**FREE, "init_cash": cash}, maintenance_margin=TIERS)
    entry, liquidation = result.fills.iloc[0], result.fills.iloc[-1]
    units, notional = entry["size"], entry["size"] * entry["price"]
    assert entry["price"] == 99 and notional == pytest.approx(cash * 10)
    expected = _long_liquidation(notional, notional / 10, units, rate, amount)
    assert liquidation["kind"] == "liquidation" and liquidation["price"] == pytest.approx(expected, rel=1e-12)
    assert (units * expected >= 5_000) == (rate == 0.02)  # the tier holds the notional at that price
    # what the position held there is the maintenance margin of that tier, kept by the venue
    assert liquidation["fee"] == pytest.approx(units * expected * rate - amount, rel=1e-9)


@pytest.mark.parametrize("cash, rate, amount", [(1000.0, 0.02, 50.0), (400.0, 0.01, 0.0)])
def test_a_tiered_short_is_liquidated_where_the_venue_computes_it(cash, rate, amount):
    result = _quiet_backtest(
        "rules",
        SHORTED,
        {"rules": "leverage 10\nsell 100% when close < 9"},
        **{**FREE, "init_cash": cash},
        maintenance_margin=TIERS,
    )
    entry, liquidation = result.fills.iloc[0], result.fills.iloc[-1]
    units, notional = -entry["size"], -entry["size"] * entry["price"]
    assert entry["price"] == 8 and notional == pytest.approx(cash * 10)
    expected = _short_liquidation(notional, notional / 10, units, rate, amount)
    assert liquidation["kind"] == "liquidation" and liquidation["price"] == pytest.approx(expected, rel=1e-12)
    assert (units * expected >= 5_000) == (rate == 0.02)


def test_a_float_rate_keeps_its_approximation_and_one_tier_is_exact():
    approx = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **FREE, maintenance_margin=MMR)
    assert approx.fills.iloc[-1]["price"] == pytest.approx(LIQ)  # 99 * (1 - 1/10 + mmr)
    exact = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **FREE, maintenance_margin=[(0, MMR)])
    assert exact.fills.iloc[-1]["price"] == pytest.approx(99 * (1 - 1 / 10) / (1 - MMR))  # 89.548
    assert exact.settings["maintenance_margin"] == [[0.0, MMR, 0.0, None]]


def test_the_bundled_venue_tiers_and_ccxt_rows_are_taken():
    binance = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **FREE, maintenance_margin="binance")
    units = binance.fills.iloc[0]["size"]  # notional 10,000: Binance's first bracket, 0.4%, amount 0
    assert binance.fills.iloc[-1]["price"] == pytest.approx(_long_liquidation(10_000, 1_000, units, 0.004, 0))
    ccxt_rows = [
        {"minNotional": 0, "maintenanceMarginRate": 0.01, "maxLeverage": 20, "info": {"cum": "0"}},
        {"minNotional": 5000, "maintenanceMarginRate": 0.02, "maxLeverage": 10, "info": {"cum": "50.0"}},
    ]
    rows = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **FREE, maintenance_margin=ccxt_rows)
    tiers = _quiet_backtest("ema_reversal", DIPPED, FAR_STOP, **FREE, maintenance_margin=TIERS)
    assert rows.fills.iloc[-1]["price"] == tiers.fills.iloc[-1]["price"]


@pytest.mark.parametrize(
    "tiers, leverage, message",
    [
        (
            [(0, 0.01), (5_000, 0.005)],
            10,
            "maintenance_margin: tier 2's rate 0.005 is not allowed; expected a number "
            r"from 0.01 \(tier 1's\) to below 1",
        ),
        (
            [(0, 0.01), (5_000, 0.02), (2_000, 0.03)],
            10,
            "maintenance_margin: tier 3's notional floor 2000 is not above "
            "tier 2's 5000; expected tiers sorted by floor from 0",
        ),
        ([(0, -0.01)], 10, "maintenance_margin: tier 1's rate -0.01 is not allowed; expected a finite number >= 0"),
        (
            [(0, 0.01), (-5, 0.02)],
            10,
            "maintenance_margin: tier 2's notional floor -5 is not allowed; expected a finite number >= 0",
        ),
        (
            [(0, 0.01), (5_000, 0.02, 60)],
            10,
            "maintenance_margin: tier 2's maintenance amount 60 does not continue tier 1: expected 50",
        ),
        (
            [(0, 0.01), (5_000, 0.2)],
            10,
            r"maintenance_margin: tier 2's rate 0.2 \(notional 5,000 to any\) is not allowed "
            r"with leverage 10; expected a number from 0 to below 1/leverage = 0.1",
        ),
        (
            "binance",
            101,
            r"leverage: 101 is above tier 2's maximum of 100 \(notional 50,000 to 250,000; this run's "
            r"positions can reach 101,000",
        ),
        ("bitmex", 10, "maintenance_margin: 'bitmex' is not allowed; expected a rate from 0 to 0.5"),
    ],
)
def test_bad_tiers_are_refused_on_one_line(tiers, leverage, message):
    with pytest.raises(ParameterError, match=message) as raised:
        wb.backtest("ema_reversal", DIPPED, {**FAR_STOP, "leverage": leverage}, **FREE, maintenance_margin=tiers)
    assert "\n" not in str(raised.value)


def test_a_position_beyond_the_leverage_s_tiers_is_refused_unless_capped():
    params = {**FAR_STOP, "leverage": 60}  # Binance allows 60x only below 250,000 of notional
    with pytest.raises(ParameterError, match="leverage: 60 is above tier 3's maximum of 50"):
        wb.backtest("ema_reversal", DIPPED, params, **{**FREE, "init_cash": 10_000}, maintenance_margin="binance")
    capped = _quiet_backtest(
        "ema_reversal",
        DIPPED,
        params,
        risk={"max_position_size": 200_000},
        **{**FREE, "init_cash": 10_000},
        maintenance_margin="binance",
    )
    assert capped.metrics["liquidations"] == 1


# -- the mark price judges liquidation; stops and limits fill on the traded price -----------
CALM = bars([*DIP_THEN_GAP, (95, 96, 92, 94), (94, 95, 93, 94)])  # the traded price stays above 89.595


def _mark(candles, low_at_3):
    mark = candles[["high", "low", "close"]].copy()
    mark.iloc[3, mark.columns.get_loc("low")] = low_at_3
    return mark


def test_a_mark_below_the_liquidation_price_liquidates_while_the_last_price_does_not():
    plain = wb.backtest("ema_reversal", CALM, FAR_STOP, **FREE)
    assert plain.metrics["liquidations"] == 0
    marked = _quiet_backtest("ema_reversal", CALM, FAR_STOP, **FREE, mark=_mark(CALM, 89.0))
    liquidation = marked.fills.iloc[-1]
    assert liquidation["kind"] == "liquidation" and liquidation["price"] == pytest.approx(LIQ)
    assert liquidation["time"] == CALM.index[3]
    row = wb.sweep("ema_reversal", CALM, FAR_STOP, **FREE, mark=_mark(CALM, 89.0), progress=False).iloc[0]
    assert row["liquidations"] == 1 and row["final_equity"] == marked.metrics["final_equity"]


def test_a_last_price_below_the_liquidation_price_does_not_liquidate_while_the_mark_stays_above():
    wick = bars([*DIP_THEN_GAP, (95, 96, 85, 94), (94, 95, 93, 94)])  # a wick of the last price to 85
    assert _quiet_backtest("ema_reversal", wick, FAR_STOP, **FREE).metrics["liquidations"] == 1
    marked = wb.backtest("ema_reversal", wick, FAR_STOP, **FREE, mark=_mark(wick, 92.0))
    assert marked.metrics["liquidations"] == 0
    stopped = wb.backtest("ema_reversal", wick, {**LEVERED, "stop_loss": 5.0}, **FREE, mark=_mark(wick, 92.0))
    stop = stopped.fills[stopped.fills["kind"] == "stop_loss"]  # the stop fills on the traded price
    assert (
        len(stop) == 1 and stop.iloc[0]["price"] == pytest.approx(99 * 0.95) and stop.iloc[0]["time"] == wick.index[3]
    )
    assert stopped.metrics["liquidations"] == 0


def test_a_mark_series_and_a_misaligned_mark_and_an_unsupported_template():
    series = CALM["close"].copy()
    series.iloc[3] = 89.0  # one mark price per bar: it moved from 99 (bar 2) to 89 in bar 3
    assert _quiet_backtest("ema_reversal", CALM, FAR_STOP, **FREE, mark=series).metrics["liquidations"] == 1
    with pytest.raises(ParameterError, match=r"mark: no valid mark price at 2024-01-01 04:00:00\+00:00"):
        wb.backtest("ema_reversal", CALM, FAR_STOP, **FREE, mark=_mark(CALM, 89.0).iloc[:4])


def test_a_rule_strategy_is_liquidated_on_the_mark_too():
    rule = {"rules": "leverage 10\nsell 100% when close < 9"}  # short at 8, liquidated at 8.76
    assert _quiet_backtest("rules", SHORTED, rule, **FREE).metrics["liquidations"] == 1  # the gap to 9.5
    calm = SHORTED[["high", "low", "close"]].copy()
    calm.iloc[5] = [8.6, 8.4, 8.5]  # the mark stays below 8.76 while the last price gaps above it
    assert wb.backtest("rules", SHORTED, rule, **FREE, mark=calm).metrics["liquidations"] == 0
    spike = SHORTED[["high", "low", "close"]].copy()
    spike.iloc[4] = [9.0, 7.9, 8.1]  # the mark spikes through 8.76 while the last price stays at 8.2
    spiked = _quiet_backtest("rules", SHORTED, rule, **FREE, mark=spike)
    assert spiked.fills.iloc[-1]["kind"] == "liquidation" and spiked.fills.iloc[-1]["time"] == SHORTED.index[4]


# -- the compiled cache follows the engine's source ----------------------------------------


def _package(root, helper_returns):
    package = root / "pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "eng.py").write_text(
        f"from numba import njit\n\n\n@njit(cache=True)\ndef helper():\n    return {helper_returns}\n"
    )
    (package / "ker.py").write_text(
        "from numba import njit\n\nfrom pkg import eng\n\n\n@njit(cache=True)\ndef kernel():\n    return eng.helper()\n"
    )
    return package


def _kernel_result(root, hashed):
    package = root / "pkg"
    script = (
        f"import sys\nsys.path.insert(0, {str(root)!r})\nfrom workbench.engine import core\n"
        + (
            f"core.use_hashed_cache({str(package)!r}, [{str(package / 'eng.py')!r}], base={str(root / 'cache')!r})\n"
            if hashed
            else ""
        )
        + "from pkg import ker\nprint(ker.kernel())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_an_edited_engine_is_compiled_afresh_not_loaded_from_a_stale_cache(tmp_path):
    from workbench.engine import core

    plain, hashed = tmp_path / "plain", tmp_path / "hashed"
    for root in (plain, hashed):
        root.mkdir()
        _package(root, 1)
        assert _kernel_result(root, hashed=root == hashed) == 1  # compiled and cached
    for root in (plain, hashed):
        _package(root, 22)  # the engine's helper changes; the kernel's own file does not
    assert _kernel_result(plain, hashed=False) == 1  # numba alone: the stale kernel, from its cache
    assert _kernel_result(hashed, hashed=True) == 22  # a new source hash: a new cache directory
    assert len(list((hashed / "cache").glob("numba-*"))) == 2
    # the workbench's own cache directory is named by its engine and kernel sources
    engine = tmp_path / "core.py"
    engine.write_text(open(core.__file__).read())
    before = core.source_digest([engine])
    engine.write_text(engine.read_text().replace("INTENT_ROWS = 24", "INTENT_ROWS = 25"))
    assert core.source_digest([engine]) != before
    assert core.CACHE_DIR.name == f"numba-{core.source_digest(core.kernel_sources(core._PACKAGE))}"
    compiled = {path.relative_to(core._PACKAGE).as_posix() for path in core.kernel_sources(core._PACKAGE)}
    assert {
        "engine/core.py",
        "engine/indicators.py",
        "strategies/channel.py",
        "research/_cross_validate.py",
    } <= compiled


def test_at_leverage_100_a_ladder_is_held_to_the_margin_it_has_and_to_the_position_limit():
    candles = wb.load_candles().loc["2019-01":"2019-03"]
    ladder = {"ema_window": 48, "dip_levels": [0.5, 1.0, 1.5], "leverage": 100, "take_profit": [1.0]}
    for cap in (None, 50_000.0):
        result = _quiet_backtest(
            "ema_reversal", candles, ladder, risk={"max_position_size": cap}, fees=0.0004, maintenance_margin=0.004
        )
        fills = result.fills
        held = fills["size"].cumsum().round(9)
        entries = fills["kind"] == "entry"
        assert entries.sum() >= 3
        notional = (held * fills["price"]).abs()[entries]
        if cap is not None:  # the absolute notional an entry leaves stays within the limit
            assert notional.max() <= cap * (1 + 1e-9)
        # the margin of what is held after each entry is paid from the account: never more than it has
        margin = notional / 100
        equity_before = result.equity.shift(1, fill_value=10_000.0).reindex(fills["time"][entries]).to_numpy()
        assert (margin.to_numpy() <= equity_before * (1 + 1e-6) + 1e-9).all()
