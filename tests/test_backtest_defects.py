"""The backtest's edge cases, each pinned on hand-made candles: the position limit on both
sides, bad settings refused, liquidation of unleveraged shorts, ruin, a stop and a
liquidation in one gap, duplicate candles, and one-line CLI errors."""
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
    capped = wb.backtest("market_making", candles, params, risk={"max_position_size": 300}, fees=0.0,
                         slippage=0.0, init_cash=10_000)
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
    message = r"maintenance_margin: 0.02 is not allowed with leverage 50; expected a number from 0 to below " \
              r"1/leverage = 0.02"
    with pytest.raises(ParameterError, match=message):
        wb.backtest("ema_reversal", CHANNEL_UP, params, maintenance_margin=0.02)
    with pytest.raises(ParameterError, match="with leverage 50"):  # a sweep checks every combination
        wb.sweep("ema_reversal", CHANNEL_UP, {**params, "leverage": [2, 50]}, maintenance_margin=0.02,
                 progress=False)
    ok = wb.backtest("ema_reversal", CHANNEL_UP, params, maintenance_margin=0.0199)
    assert ok.metrics["liquidations"] == 0


# -- unleveraged shorts are liquidated; ruin stops the run ----------------------------------
SHORT_THEN_SQUEEZE = bars([(10, 11, 9, 10)] * 3 + [
    (10, 10, 8, 8.5),      # 3: close below the channel: sell at the next open
    (8, 9, 7.5, 8.5),      # 4: short at 8
    (8.5, 16.5, 8.5, 16),  # 5: the high passes 8 * (2 - mmr) = 15.96: liquidated
    (16, 17, 15, 16),
    (16, 17, 6, 6.5),      # 7: close below the channel again: would sell
    (6, 6, 5, 5.5),
])


def test_an_unleveraged_short_is_liquidated_and_a_full_size_one_ruins_the_account():
    params = {"entry_window": 3, "exit_window": 3, "direction": "short"}
    with pytest.warns(RuntimeWarning, match=r"channel: the account was ruined at 2024-01-01 05:00:00\+00:00 by a "
                                            r"liquidation fill .*nothing is traded after it"):
        result = wb.backtest("channel", SHORT_THEN_SQUEEZE, params, **FREE)
    units = 1000 / 8
    assert [(k, round(s, 9), p) for k, s, p in zip(result.fills["kind"].astype(str), result.fills["size"],
                                                   result.fills["price"])] == \
        [("entry", -units, 8.0), ("liquidation", units, 8 * (2 - MMR))]
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
    squeeze = bars([(100, 100, 100, 100), (100, 101.5, 100, 101),  # 1: the ask sells 10 at 101
                    (101, 250, 101, 240), (240, 245, 230, 240), (240, 245, 230, 240)])
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
    path = _write(tmp_path / "dup.csv", ["2024-01-01 00:00,1,2,1,1.5,10", "2024-01-01 01:00,1,2,1,1.5,10",
                                         "2024-01-01 01:00,1,2,1,1.5,x", "2024-01-01 02:00,1,2,1,1.5,10"])
    with pytest.raises(CandleError) as caught:
        wb.read_candles(path)
    assert "line 4 (2024-01-01 01:00 UTC): volume 'x' is not a number; duplicate: has the same time as, but " \
           "other values than, line 3" in str(caught.value)
    assert "2 problems" in str(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_errors_are_one_line(tmp_path):
    path = _write(tmp_path / "dup.csv", ["2024-01-01 00:00,1,2,1,1.5,10", "2024-01-01 01:00,1,2,1,1.5,10",
                                         "2024-01-01 01:00,1,3,1,1.5,10", "2024-01-01 02:00,1,2,1,1.5,10"])
    for args, expected in [
        (["backtest", "channel", "--candles", path],
         f"workbench backtest: error: {path}: 1 problem in the 1h candles: line 4 (2024-01-01 01:00 UTC): "
         "duplicate: has the same time as, but other values than, line 3; Fix the data"),
        (["backtest", "channel"], "workbench backtest: error: the following arguments are required: --candles"),
    ]:
        run = _cli(*args)
        assert run.returncode == 2
        assert run.stderr.count("\n") == 1 and run.stderr.startswith(expected), run.stderr


def test_an_error_about_a_changed_frame_names_the_file_it_was_read_from(tmp_path):
    path = _write(tmp_path / "ok.csv", [f"2024-01-01 {h:02d}:00,1,2,1,1.5,10" for h in range(6)])
    candles = wb.read_candles(path)
    candles.loc[candles.index[3], "high"] = 0.5
    with pytest.raises(CandleError, match=rf"^candles DataFrame \(from {path}\): 1 problem .*\n  row 3 "
                                          r"\(2024-01-01 03:00 UTC\): high 0.5 is below low 1.0"):
        wb.backtest("channel", candles)
    bare = pd.DataFrame(candles)
    bare.attrs = {}
    with pytest.raises(CandleError, match=r"^candles DataFrame: 1 problem"):
        wb.backtest("channel", bare)
