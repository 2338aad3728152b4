"""The ``ema_reversal`` template: a ladder of limit buys below an EMA, stop-loss, take-profits.

Semantics (also in ``templates/ema_reversal.json``): during bar t the unfilled dip levels
rest at ema[t-1]*(1-dip/100); exits are checked before entries, worst case first
(liquidation or stop-loss, then take-profits); leverage > 1 is an isolated-margin position.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.backtest import _engine as e
from workbench.strategies._kernel import Kernel, register

_LADDER = 8  # the schema's max_items for dip_levels and take_profit
P_STOP, P_SIZE, P_DIPS, P_TPS, P_DIP0 = 0, 1, 2, 3, 4
P_TP0 = P_DIP0 + _LADDER


@njit(cache=True)
def _exits(state, cfg, fills, t, open_, high, low, p, tps_done, tp_unit):
    """Liquidation, stop-loss, take-profits; returns (exited, tps_done, tp_unit)."""
    entry = state[e.ENTRY]
    stop = entry * (1.0 - p[P_STOP] / 100.0)
    stop_fill = min(open_, stop) * (1.0 - cfg[e.C_SLIPPAGE])
    liq = e.liquidation_price(state, cfg)
    # the liquidation comes first when it is nearer than the stop, or when the stop would
    # fill beyond it (a gap): isolated margin never loses more than the margin
    if not np.isnan(liq) and low <= liq and (liq >= stop or stop_fill <= liq):
        e.liquidate(state, fills, t, liq)
        return True, tps_done, tp_unit
    if low <= stop:
        e.fill(state, cfg, fills, t, -state[e.UNITS], stop_fill, cfg[e.C_FEE_TAKER], e.FILL_STOP)
        return True, tps_done, tp_unit
    exited = False
    n_tps = int(p[P_TPS])
    while tps_done < n_tps:
        price, fee = e.limit_fill(-1, entry * (1.0 + p[P_TP0 + tps_done] / 100.0), open_, high, low, cfg)
        if np.isnan(price):
            break
        if tps_done == 0:
            tp_unit = state[e.UNITS] / n_tps
        size = state[e.UNITS] if tps_done == n_tps - 1 else min(tp_unit, state[e.UNITS])
        e.fill(state, cfg, fills, t, -size, price, fee, e.FILL_TAKE_PROFIT)
        tps_done += 1
        exited = True
        if state[e.UNITS] == 0.0:
            break
    return exited, tps_done, tp_unit


@njit(cache=True)
def simulate(open_, high, low, close, day, ind, rows, p, cfg, fills, equity_out, position_out, out):
    ema = ind[rows[0]]
    n_dips = int(p[P_DIPS])
    state = e.new_state(cfg)
    acc = e.new_accumulator(cfg)
    dips_done = 0
    tps_done = 0
    tp_unit = 0.0
    level_budget = 0.0
    risk_close = False
    for t in range(close.shape[0]):
        e.new_day(state, cfg, day[t], open_[t])
        exited = False
        if risk_close:
            e.close_all(state, cfg, fills, t, open_[t], e.FILL_RISK)
            risk_close = False
            exited = True
        if state[e.UNITS] > 0.0:
            exited, tps_done, tp_unit = _exits(state, cfg, fills, t, open_[t], high[t], low[t], p,
                                               tps_done, tp_unit)
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
                    break
                units = e.entry_units(state, cfg, price, level_budget, fee)
                if units > 0.0:
                    e.fill(state, cfg, fills, t, units, price, fee, e.FILL_ENTRY)
                dips_done += 1
        if e.daily_loss_breached(state, cfg, close[t]) and state[e.UNITS] != 0.0:
            risk_close = True
        e.end_bar(state, acc, equity_out, position_out, t, close[t])
    e.finish(state, acc, cfg, out)


@register
class EmaReversal(Kernel):
    name = "ema_reversal"
    fills_per_bar = 2 * _LADDER + 2
    simulate = simulate

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        return [("ema", params["ema_window"])]

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        p = np.zeros(P_TP0 + _LADDER)
        p[P_STOP], p[P_SIZE] = params["stop_loss"], params["position_size"]
        dips, tps = params["dip_levels"], params["take_profit"]
        p[P_DIPS], p[P_TPS] = len(dips), len(tps)
        p[P_DIP0:P_DIP0 + len(dips)] = dips
        p[P_TP0:P_TP0 + len(tps)] = tps
        return p
