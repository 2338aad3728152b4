"""Each template's semantics pinned on hand-made candles whose trades are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from _bars import FREE, bars

import workbench as wb

FLAT = (10.0, 11.0, 9.0, 10.0)


# -- channel -------------------------------------------------------------------------------
BREAKOUT_UP = bars(
    [
        FLAT,
        FLAT,
        FLAT,
        (10, 12, 10, 11.5),  # 3: close 11.5 > 11 = highest high of bars 0-2 -> buy at the next open
        (12, 13, 11, 12.5),  # 4: filled at 12
        (12.5, 13, 12, 12.8),
        (12.8, 12.9, 9.5, 9.8),  # 6: close 9.8 < 11 = lowest low of bars 4-5 -> sell at the next open
        (9.7, 10, 9, 9.5),  # 7: filled at 9.7
    ]
)
BREAKOUT_DOWN = bars(
    [
        FLAT,
        FLAT,
        FLAT,
        (10, 10, 8, 8.5),  # 3: close 8.5 < 9 = lowest low of bars 0-2
        (8, 9, 7, 7.5),  # 4: filled at 8
        (7.5, 8, 7, 7.2),
        (7.2, 10.5, 7.1, 10.2),  # 6: close 10.2 > 9 = highest high of bars 4-5
        (10.3, 10.5, 10, 10.2),  # 7: filled at 10.3
    ]
)
CHANNEL = {"entry_window": 3, "exit_window": 2}


def _fills(result):
    return [
        (result.candles.index.get_loc(f.time), round(f.size, 9), round(f.price, 9), str(f.kind))
        for f in result.fills.itertuples()
    ]


def test_channel_breakout_long_buys_the_next_open_after_a_close_above_the_channel():
    result = wb.backtest("channel", BREAKOUT_UP, CHANNEL, **FREE)
    units = 1000 / 12
    assert _fills(result) == [(4, round(units, 9), 12.0, "entry"), (7, round(-units, 9), 9.7, "exit")]
    assert result.metrics["final_equity"] == pytest.approx(units * 9.7)
    assert result.metrics["trades"] == 1 and result.metrics["win_rate"] == 0
    assert result.metrics["exposure"] == pytest.approx(3 / 8)  # held at the close of bars 4, 5, 6
    assert list(result.position.to_numpy() != 0) == [False] * 4 + [True] * 3 + [False]


def test_channel_costs_slippage_moves_the_price_and_the_fee_comes_out_of_the_cash():
    result = wb.backtest("channel", BREAKOUT_UP, CHANNEL, fees=0.01, slippage=0.01, init_cash=1000)
    buy = 12 * 1.01
    units = 1000 / (buy * 1.01)
    sell = 9.7 * 0.99
    assert result.fills["price"].tolist() == pytest.approx([buy, sell])
    assert result.fills["fee"].tolist() == pytest.approx([units * buy * 0.01, units * sell * 0.01])
    assert result.metrics["final_equity"] == pytest.approx(units * sell * 0.99)
    assert result.metrics["fees_paid"] == pytest.approx(result.fills["fee"].sum())


def test_channel_short_breakout_sells_a_close_below_the_channel():
    result = wb.backtest("channel", BREAKOUT_DOWN, {**CHANNEL, "direction": "short"}, **FREE)
    assert _fills(result) == [(4, -125.0, 8.0, "entry"), (7, 125.0, 10.3, "exit")]
    assert result.metrics["final_equity"] == pytest.approx(1000 - 125 * 2.3)
    assert result.trades["side"].tolist() == ["short"]
    assert result.trades["pnl"].tolist() == pytest.approx([-287.5])


def test_channel_reversion_buys_the_same_close_that_breakout_would_sell():
    result = wb.backtest("channel", BREAKOUT_DOWN, {**CHANNEL, "mode": "reversion"}, **FREE)
    assert _fills(result) == [(4, 125.0, 8.0, "entry"), (7, -125.0, 10.3, "exit")]
    assert result.metrics["final_equity"] == pytest.approx(1287.5)
    assert result.metrics["win_rate"] == 1


def test_channel_both_reverses_on_an_opposite_breakout():
    candles = bars(
        [
            FLAT,
            FLAT,
            FLAT,
            (10, 12, 10, 11.5),
            (12, 13, 11, 12.5),
            (12.5, 13, 12, 12.8),
            (12.8, 12.9, 8, 8.5),  # 6: below both the exit (11) and the entry (10) channel
            (8.4, 8.6, 8, 8.2),
        ]
    )
    result = wb.backtest("channel", candles, {**CHANNEL, "direction": "both"}, **FREE)
    long_units = 1000 / 12
    equity_after = long_units * 8.4
    assert _fills(result) == [
        (4, round(long_units, 9), 12.0, "entry"),
        (7, round(-long_units, 9), 8.4, "exit"),
        (7, round(-equity_after / 8.4, 9), 8.4, "entry"),
    ]
    assert result.position.iloc[-1] == pytest.approx(-equity_after / 8.4)
    assert result.metrics["trades"] == 1  # the short is still open


def test_channel_max_position_size_caps_the_notional():
    result = wb.backtest("channel", BREAKOUT_UP, CHANNEL, risk={"max_position_size": 500}, **FREE)
    assert result.fills["size"].iloc[0] == pytest.approx(500 / 12)


def test_daily_loss_limit_closes_at_the_next_open_and_halts_until_the_next_day():
    candles = bars(
        [
            *BREAKOUT_UP[["open", "high", "low", "close"]].itertuples(index=False),
            (9.5, 14, 9.5, 13.9),  # 8: close above the channel of bars 5-7: an entry signal
            (14, 14, 14, 14),
        ]
    )
    free = wb.backtest("channel", candles, CHANNEL, **FREE)
    assert _fills(free)[-1][0] == 9  # without the limit, bar 8's signal buys bar 9's open
    limited = wb.backtest("channel", candles, CHANNEL, risk={"max_daily_loss": 100}, **FREE)
    # bar 6 closes 183 below the day's start: closed at bar 7's open, no entry the same day
    assert [(bar, kind) for bar, _, _, kind in _fills(limited)] == [(4, "entry"), (7, "risk_limit")]


# -- ema_reversal --------------------------------------------------------------------------
LADDER = {"ema_window": 2, "dip_levels": [1.0, 2.0], "stop_loss": 5.0, "take_profit": [1.0, 2.0]}
DIP = [
    (100, 100, 100, 100),
    (100, 100, 100, 100),
    (100, 100, 98.5, 99),  # 2: ema[1] = 100: the 1% level (99) fills, the 2% level (98) does not
    (99, 99.5, 97, 98),
]  # 3: ema[2] = 99.333: the 2% level (97.3467) fills
EMA_2 = 2 / 3 * 99 + 1 / 3 * 100
UNITS = 500 / 99 + 500 / (EMA_2 * 0.98)  # each level spends half of the 1000
AVERAGE = 1000 / UNITS


def test_ema_reversal_ladder_fills_then_take_profits_close_equal_parts():
    result = wb.backtest("ema_reversal", bars([*DIP, (98, 100.5, 98, 100), (100, 100, 100, 100)]), LADDER, **FREE)
    assert _fills(result) == [
        (2, round(500 / 99, 9), 99.0, "entry"),
        (3, round(500 / (EMA_2 * 0.98), 9), round(EMA_2 * 0.98, 9), "entry"),
        (4, round(-UNITS / 2, 9), round(AVERAGE * 1.01, 9), "take_profit"),
        (4, round(-UNITS / 2, 9), round(AVERAGE * 1.02, 9), "take_profit"),
    ]
    assert result.metrics["final_equity"] == pytest.approx(1015)  # 1.5% average gain on 1000
    assert result.metrics["trades"] == 1 and result.metrics["win_rate"] == 1


def test_ema_reversal_stop_loss_closes_everything_below_the_average_entry():
    result = wb.backtest("ema_reversal", bars([*DIP, (98, 98.5, 92, 93)]), LADDER, **FREE)
    last = result.fills.iloc[-1]
    assert last["kind"] == "stop_loss" and last["price"] == pytest.approx(AVERAGE * 0.95)
    assert result.metrics["final_equity"] == pytest.approx(950)


def test_ema_reversal_stop_fills_at_the_open_when_the_bar_gaps_below_it():
    result = wb.backtest("ema_reversal", bars([*DIP, (90, 91, 89, 90)]), LADDER, **FREE)
    assert result.fills.iloc[-1]["price"] == 90.0
    assert result.metrics["final_equity"] == pytest.approx(UNITS * 90)


def test_ema_reversal_leverage_liquidates_when_losses_eat_the_margin():
    params = {**LADDER, "leverage": 10, "stop_loss": 20.0}
    result = wb.backtest("ema_reversal", bars([*DIP, (98, 98.5, 88, 89), (89, 89, 89, 89)]), params, **FREE)
    liquidation = result.fills.iloc[-1]
    assert liquidation["kind"] == "liquidation"
    assert liquidation["price"] == pytest.approx(AVERAGE * (1 - 1 / 10 + 0.005))
    # the whole margin (1000) is gone; the 0.5% maintenance margin left (50) is the exchange's fee
    assert liquidation["fee"] == pytest.approx(50)
    assert result.equity.iloc[-2:].tolist() == pytest.approx([0, 0], abs=1e-9)
    assert result.metrics["liquidations"] == 1
    assert result.trades["pnl"].tolist() == pytest.approx([-1000])


def test_ema_reversal_leverage_multiplies_the_position_on_the_same_margin():
    spot = wb.backtest("ema_reversal", bars(DIP), LADDER, **FREE)
    levered = wb.backtest("ema_reversal", bars(DIP), {**LADDER, "leverage": 5}, **FREE)
    assert levered.position.iloc[-1] == pytest.approx(5 * spot.position.iloc[-1])
    assert levered.equity.iloc[-1] - 1000 == pytest.approx(5 * (spot.equity.iloc[-1] - 1000))


# -- market_making -------------------------------------------------------------------------
MM = {"spread": 2.0, "order_size": 0.1, "max_inventory": 0.5}


def test_market_making_both_quotes_fill_in_a_bar_that_trades_through_them():
    candles = bars(
        [
            (100, 100, 100, 100),
            (100, 101.5, 98.5, 101),  # 1: rising: bid 99 fills first, then ask 101
            (101, 101.5, 99.5, 100),  # 2: falling: ask 102.01 missed, bid 99.99 fills
            (100, 100.2, 99.9, 100),
        ]
    )
    result = wb.backtest("market_making", candles, MM, **FREE)
    second = 0.1 * 1002 / 101
    assert _fills(result) == [(1, 1.0, 99.0, "entry"), (1, -1.0, 101.0, "entry"), (2, round(second, 9), 99.99, "entry")]
    assert result.trades["pnl"].tolist() == pytest.approx([2.0])
    assert result.metrics["final_equity"] == pytest.approx(1002 + second * (100 - 99.99))


def test_market_making_long_only_never_sells_what_it_does_not_hold():
    candles = bars([(100, 100, 100, 100), (100, 101.5, 98.5, 99)])  # falling: the ask would fill first
    result = wb.backtest("market_making", candles, MM, **FREE)
    assert _fills(result) == [(1, 1.0, 99.0, "entry")]
    both = wb.backtest("market_making", candles, {**MM, "inventory": "both"}, **FREE)
    assert _fills(both) == [(1, -1.0, 101.0, "entry"), (1, 1.0, 99.0, "entry")]


def test_market_making_inventory_limit_stops_the_bid():
    # rising bars whose lows reach the bid and whose highs never reach the ask
    dips = [(98, 98, 98, 98)] + [(98, 98.5, 96, 98.0 + 0.01 * i) for i in range(12)]
    result = wb.backtest("market_making", bars(dips), {**MM, "max_inventory": 0.25}, **FREE)
    notional = np.abs(result.position.to_numpy() * bars(dips)["close"].to_numpy())
    assert notional.max() <= 0.25 * 1000 * 1.01
    assert result.position.iloc[-1] == pytest.approx(result.position.iloc[-2])  # full: no more bids


def test_market_making_maker_fee_applies_to_quotes():
    candles = bars([(100, 100, 100, 100), (100, 101.5, 98.5, 101)])
    result = wb.backtest(
        "market_making", candles, MM, fees={"maker": 0.001, "taker": 0.005}, slippage=0.0, init_cash=1000
    )
    assert result.fills["fee"].tolist() == pytest.approx([99 * 0.001, 101 * 0.001])


# -- schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, fragment",
    [
        (
            {"entry_window": 1},
            "parameter 'entry_window': 1 is not allowed (out of range); expected a whole number from 2 to 20000",
        ),
        ({"entry_window": 2.5}, "'entry_window': 2.5 is not allowed (not a whole number)"),
        ({"mode": "sideways"}, "'mode': 'sideways' is not allowed; expected one of 'breakout', 'reversion'"),
        ({"position_size": float("nan")}, "'position_size': nan is not allowed (not a finite number)"),
        ({"window": 3}, "template 'channel' has no parameter 'window'; its parameters are entry_window"),
    ],
)
def test_invalid_parameters_name_the_parameter_the_value_and_the_range(params, fragment):
    with pytest.raises(wb.ParameterError) as info:
        wb.backtest("channel", BREAKOUT_UP, params)
    assert fragment in str(info.value)


def test_ladders_must_ascend_and_stay_in_range():
    with pytest.raises(
        wb.ParameterError, match=r"'dip_levels': \[0.5, 0.3\] is not allowed \(not strictly ascending\)"
    ):
        wb.backtest("ema_reversal", bars(DIP), {"dip_levels": [0.5, 0.3]})
    with pytest.raises(wb.ParameterError, match=r"'take_profit'.*each from 0.05 to 500"):
        wb.backtest("ema_reversal", bars(DIP), {"take_profit": [1, 600]})


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(
        wb.TemplateError, match="unknown template 'grid'; the templates are channel, ema_reversal, market_making"
    ):
        wb.get_template("grid")


def test_every_spec_documents_its_semantics_and_risk_limits():
    for template in wb.templates().values():
        assert {"signal", "fill"} <= set(template.semantics), template.name
        assert set(template.risk_limits) == {"max_position_size", "max_daily_loss"}
        assert all(p.help for p in template.params.values()), template.name
        assert template.strategy()["type"] == template.name
