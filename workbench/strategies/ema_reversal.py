"""The ``ema_reversal`` template: a ladder of limit buys below an EMA, stop-loss, take-profits.

Semantics (also in ``templates/ema_reversal.json``): during bar t the unfilled dip levels
rest at ema[t-1]*(1-dip/100); exits are checked before entries, worst case first
(liquidation or stop-loss, the nearer first, then take-profits); leverage > 1 is an
isolated-margin position; a ruin stops the run.
Live intent: a stop-market order for the whole position, the take-profit ladder and the
unfilled dip levels as limit orders, each sized as the kernel would fill it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.engine import core as e
from workbench.strategies._kernel import Kernel, register

_LADDER = 8  # the schema's max_items for dip_levels and take_profit
P_STOP, P_SIZE, P_DIPS, P_TPS, P_DIP0 = 0, 1, 2, 3, 4
P_TP0 = P_DIP0 + _LADDER
# live intent legs: the risk close, the stop, take-profit k (LEG_TP0 + k), dip level k
LEG_RISK, LEG_STOP, LEG_TP0, LEG_DIP0 = 0, 1, 2, 2 + _LADDER


@njit(cache=True)
def _exits(state, cfg, fills, t, open_, high, low, mark_high, mark_low, p, tps_done, tp_unit, intent, live):
    """Liquidation (on the mark's high and low), stop-loss, take-profits; returns (exited, tps_done, tp_unit)."""
    entry = state[e.ENTRY]
    stop = entry * (1.0 - p[P_STOP] / 100.0)
    kind, price = e.stop_or_liquidation_marked(state, cfg, stop, open_, high, low, mark_high, mark_low)
    if kind == e.FILL_LIQUIDATION:  # the exchange liquidates: no order of ours
        e.liquidate(state, fills, t, price)
        return True, tps_done, tp_unit
    if kind == e.FILL_STOP:
        e.intend(intent, live, LEG_STOP, e.ORDER_MARKET, -state[e.UNITS], open_)
        e.fill(state, cfg, fills, t, -state[e.UNITS], price, cfg[e.C_FEE_TAKER], e.FILL_STOP)
        return True, tps_done, tp_unit
    e.intend(intent, live, LEG_STOP, e.ORDER_STOP, -state[e.UNITS], stop)
    exited = False
    n_tps = int(p[P_TPS])
    while tps_done < n_tps:
        limit = entry * (1.0 + p[P_TP0 + tps_done] / 100.0)
        price, fee = e.limit_fill(-1, limit, open_, high, low, cfg)
        unit = e.lot(cfg, state[e.UNITS] / n_tps) if tps_done == 0 else tp_unit  # whole amount steps
        if np.isnan(price):
            if live:  # the rest of the ladder rests through the bar, each level as it would fill
                _intend_take_profits(intent, state[e.UNITS], entry, p, tps_done, unit)
            break
        tp_unit = unit
        size = state[e.UNITS] if tps_done == n_tps - 1 else min(tp_unit, state[e.UNITS])
        e.intend(intent, live, LEG_TP0 + tps_done, e.ORDER_LIMIT, -size, price)  # marketable: at the open
        e.fill(state, cfg, fills, t, -size, price, fee, e.FILL_TAKE_PROFIT)
        tps_done += 1
        exited = True
        if state[e.UNITS] == 0.0:
            break
    return exited, tps_done, tp_unit


@njit(cache=True)
def _intend_take_profits(intent, units, entry, p, tps_done, tp_unit):
    n_tps = int(p[P_TPS])
    for k in range(tps_done, n_tps):
        size = units if k == n_tps - 1 else min(tp_unit, units)
        e.intend(intent, True, LEG_TP0 + k, e.ORDER_LIMIT, -size, entry * (1.0 + p[P_TP0 + k] / 100.0))
        units = units - size


@njit(cache=True)
def _intend_dips(intent, state, cfg, ema_prev, p, dips_done, level_budget):
    """The unfilled ladder levels as resting limit buys, each sized as the kernel sizes it when
    it fills at its limit (maker fee) after the levels above it."""
    ghost = state.copy()
    no_fills = np.zeros((0, 5))
    for k in range(dips_done, int(p[P_DIPS])):
        limit = ema_prev * (1.0 - p[P_DIP0 + k] / 100.0)
        units = e.entry_units(ghost, cfg, limit, level_budget, cfg[e.C_FEE_MAKER])
        if units > 0.0:
            e.intend(intent, True, LEG_DIP0 + k, e.ORDER_LIMIT, units, limit)
            e.fill(ghost, cfg, no_fills, 0, units, limit, cfg[e.C_FEE_MAKER], e.FILL_ENTRY)


@njit(cache=True)
def simulate(open_, high, low, close, day, funding, ind, rows, p, cfg, fills, equity_out, position_out, out, intent):
    ema = ind[rows[0]]
    n_dips = int(p[P_DIPS])
    state = e.new_state(cfg)
    metrics = e.new_metrics(cfg)
    daily = e.tracks_daily_loss(cfg)
    recording = equity_out.shape[0] > 0
    mark_open, mark_high, mark_low = e.mark_prices(ind, cfg, open_, high, low)  # liquidation's prices
    dips_done = 0
    tps_done = 0
    tp_unit = 0.0
    level_budget = 0.0
    risk_close = False
    ruin = False
    n = close.shape[0]
    last = n - 1 if intent.shape[0] > 0 else -1
    for t in range(n):
        live = t == last
        if daily and day[t] != state[e.DAY]:
            e.new_day(state, day[t], open_[t])
        if funding[t] != 0.0:  # a funding time: the position held into the bar pays or receives
            e.pay_funding(state, cfg, funding[t], open_[t])
        exited = False
        if risk_close:  # unless the open gapped through the liquidation price: then the exchange's
            if not e.liquidation_reached(state, cfg, fills, t, mark_open[t], mark_open[t], mark_open[t]):
                e.intend(intent, live, LEG_RISK, e.ORDER_MARKET, -state[e.UNITS], open_[t])
                e.close_all(state, cfg, fills, t, open_[t], e.FILL_RISK)
            risk_close = False
            exited = True
        if state[e.UNITS] > 0.0:
            exited, tps_done, tp_unit = _exits(
                state,
                cfg,
                fills,
                t,
                open_[t],
                high[t],
                low[t],
                mark_high[t],
                mark_low[t],
                p,
                tps_done,
                tp_unit,
                intent,
                live,
            )
        if exited:
            ruin = e.ruined(state, cfg, t)
        if state[e.UNITS] == 0.0:
            dips_done = 0
            tps_done = 0
        if not exited and t > 0 and tps_done == 0 and state[e.HALTED] == 0.0:
            if dips_done == 0:
                level_budget = e.equity(state, open_[t]) * p[P_SIZE] / n_dips
            while dips_done < n_dips:
                limit = ema[t - 1] * (1.0 - p[P_DIP0 + dips_done] / 100.0)
                price, fee = e.limit_fill(1, limit, open_[t], high[t], low[t], cfg)
                if np.isnan(price):
                    if live:
                        _intend_dips(intent, state, cfg, ema[t - 1], p, dips_done, level_budget)
                    break
                units = e.entry_units(state, cfg, price, level_budget, fee)
                if units > 0.0:
                    e.intend(intent, live, LEG_DIP0 + dips_done, e.ORDER_LIMIT, units, price)
                    e.fill(state, cfg, fills, t, units, price, fee, e.FILL_ENTRY)
                dips_done += 1
        if daily and e.daily_loss_breached(state, cfg, close[t]):
            state[e.HALTED] = 1.0
            risk_close = state[e.UNITS] != 0.0
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
class EmaReversal(Kernel):
    name = "ema_reversal"
    fills_per_bar = 2 * _LADDER + 2
    simulate = simulate
    reads_mark = True
    legs = {
        LEG_RISK: "risk",
        LEG_STOP: "stop",
        **{LEG_TP0 + k: f"tp{k}" for k in range(_LADDER)},
        **{LEG_DIP0 + k: f"dip{k}" for k in range(_LADDER)},
    }
    reducing = {LEG_RISK, LEG_STOP, *range(LEG_TP0, LEG_TP0 + _LADDER)}

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        return [("ema", params["ema_window"])]

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        p = np.zeros(P_TP0 + _LADDER)
        p[P_STOP], p[P_SIZE] = params["stop_loss"], params["position_size"]
        dips, tps = params["dip_levels"], params["take_profit"]
        p[P_DIPS], p[P_TPS] = len(dips), len(tps)
        p[P_DIP0 : P_DIP0 + len(dips)] = dips
        p[P_TP0 : P_TP0 + len(tps)] = tps
        return p
