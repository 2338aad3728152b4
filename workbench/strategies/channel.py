"""The ``channel`` template: Donchian channel breakout or reversion, long, short or both.

Semantics (also in ``templates/channel.json``): the signal is evaluated at the close of
bar t against the channel of bars t-N..t-1, and fills at the open of bar t+1.
A short (a perpetual, unleveraged) is liquidated when a bar reaches its liquidation price
(see ``workbench.engine.core``); a ruin stops the run.
Live intent legs: ``LEG_EXIT`` (close the position) and ``LEG_ENTRY``, market orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.engine import core as e
from workbench.strategies._kernel import Kernel, register

_MODES = ("breakout", "reversion")
_DIRECTIONS = ("long", "short", "both")
LEG_EXIT, LEG_ENTRY = 0, 1


@njit(cache=True)
def _target(side, close, upper_entry, lower_entry, upper_exit, lower_exit, reversion, direction):
    """The side (+1 long, -1 short, 0 flat) wanted after the close of a bar."""
    if reversion:
        long_entry = close < lower_entry
        long_exit = close > upper_exit
        short_entry = close > upper_entry
        short_exit = close < lower_exit
    else:
        long_entry = close > upper_entry
        long_exit = close < lower_exit
        short_entry = close < lower_entry
        short_exit = close > upper_exit
    return e.target_side(side, long_entry, long_exit, short_entry, short_exit, direction != 1, direction != 0)


@njit(cache=True)
def simulate(open_, high, low, close, day, funding, ind, rows, p, cfg, fills, equity_out, position_out, out, intent):
    reversion = p[0] == 1.0
    direction = int(p[1])
    fraction = p[2]
    upper_entry, lower_entry = ind[rows[0]], ind[rows[1]]
    upper_exit, lower_exit = ind[rows[2]], ind[rows[3]]
    state = e.new_state(cfg)
    metrics = e.new_metrics(cfg)
    daily = e.tracks_daily_loss(cfg)
    recording = equity_out.shape[0] > 0
    mark_open, mark_high, mark_low = e.mark_prices(ind, cfg, open_, high, low)  # liquidation's prices
    target = 0
    side = 0  # of the position: only this kernel's own orders and a liquidation change it
    risk_exit = False
    ruin = False
    n = close.shape[0]
    last = n - 1 if intent.shape[0] > 0 else -1
    for t in range(n):
        if daily and day[t] != state[e.DAY]:
            e.new_day(state, day[t], open_[t])
        if funding[t] != 0.0:  # a funding time: the position held into the bar pays or receives
            e.pay_funding(state, cfg, funding[t], open_[t])
        if target != side:
            if side < 0 and e.liquidation_reached(state, cfg, fills, t, mark_open[t], mark_open[t], mark_open[t]):
                ruin = e.ruined(state, cfg, t)  # the open gapped through it: no order on this bar
            else:
                before = state[e.UNITS]
                e.close_all(state, cfg, fills, t, open_[t], e.FILL_RISK if risk_exit else e.FILL_EXIT)
                e.intend(intent, t == last, LEG_EXIT, e.ORDER_MARKET, state[e.UNITS] - before, open_[t])
                if target != 0:
                    before = state[e.UNITS]
                    e.market_entry(state, cfg, fills, t, target, open_[t], fraction)
                    e.intend(intent, t == last, LEG_ENTRY, e.ORDER_MARKET, state[e.UNITS] - before, open_[t])
            side = 0 if state[e.UNITS] == 0.0 else (1 if state[e.UNITS] > 0.0 else -1)
        if side < 0 and e.liquidation_reached(state, cfg, fills, t, mark_open[t], mark_high[t], mark_low[t]):
            side = 0  # a short is a perpetual at leverage 1 too (engine.liquidation_price)
            ruin = e.ruined(state, cfg, t)
        risk_exit = False
        if daily and e.daily_loss_breached(state, cfg, close[t]):
            state[e.HALTED] = 1.0
        if daily and state[e.HALTED] == 1.0:
            target = 0
            risk_exit = side != 0
        else:  # NaN bands (warm-up, or a side not traded) compare False: no signal
            target = _target(
                side, close[t], upper_entry[t], lower_entry[t], upper_exit[t], lower_exit[t], reversion, direction
            )
        value = e.equity(state, close[t])
        if recording:
            equity_out[t] = value
            position_out[t] = state[e.UNITS]
        metrics = e.mark(metrics, value, state[e.UNITS] != 0.0)
        if ruin:
            metrics = e.rest_after_ruin(metrics, t, n, value, equity_out, position_out)
            break
    e.finish(state, metrics, cfg, out)


@register
class Channel(Kernel):
    name = "channel"
    fills_per_bar = 3  # an exit and an entry at the open, then the new short's liquidation
    simulate = simulate
    reads_mark = True
    legs = {LEG_EXIT: "exit", LEG_ENTRY: "entry"}
    reducing = {LEG_EXIT}

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        n, m = params["entry_window"], params["exit_window"]
        keys = [("high_max", n), ("low_min", n), ("high_max", m), ("low_min", m)]
        if params["direction"] == "both":
            return keys
        # one side reads two of the four bands; the others share one NaN row (sweep memory)
        upper_entry = (params["direction"] == "long") == (params["mode"] == "breakout")
        used = (0, 3) if upper_entry else (1, 2)
        return [key if i in used else ("unused", 0) for i, key in enumerate(keys)]

    @staticmethod
    def can_short(params: Mapping[str, Any]) -> bool:
        return params["direction"] != "long"

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [_MODES.index(params["mode"]), _DIRECTIONS.index(params["direction"]), params["position_size"]],
            dtype=np.float64,
        )
