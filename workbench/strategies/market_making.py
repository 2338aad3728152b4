"""The ``market_making`` template: a bid and an ask around a reference on every bar.

Semantics (also in ``templates/market_making.json``): quotes at ref[t-1]*(1 -/+ spread/200)
fill when bar t trades through them, bid first on a rising bar, ask first on a falling one.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.backtest import _engine as e
from workbench.strategies._kernel import Kernel, register

P_SPREAD, P_ORDER, P_INVENTORY, P_SHORTS = 0, 1, 2, 3


@njit(cache=True)
def _quote(state, cfg, fills, t, side, limit, open_, high, low, quote, max_units):
    price, fee = e.limit_fill(side, limit, open_, high, low, cfg)
    if np.isnan(price):
        return
    units = state[e.UNITS]
    if side > 0:
        size = min(quote, max_units - units)
        if units >= 0.0:  # a buy that grows a long needs cash (and room under the limit)
            size = min(size, e.entry_units(state, cfg, price, size * price * (1.0 + fee), fee))
    else:
        size = min(quote, units + max_units)
    if size > 1e-12 * quote:
        e.fill(state, cfg, fills, t, side * size, price, fee, e.FILL_ENTRY)


@njit(cache=True)
def simulate(open_, high, low, close, day, ind, rows, p, cfg, fills, equity_out, position_out, out):
    ref = ind[rows[0]]
    half = p[P_SPREAD] / 200.0
    state = e.new_state(cfg)
    acc = e.new_accumulator(cfg)
    risk_close = False
    for t in range(close.shape[0]):
        e.new_day(state, cfg, day[t], open_[t])
        if risk_close:
            e.close_all(state, cfg, fills, t, open_[t], e.FILL_RISK)
            risk_close = False
        elif t > 0 and state[e.HALTED] == 0.0:
            value = e.equity(state, open_[t])
            quote = p[P_ORDER] * value / ref[t - 1]
            max_long = p[P_INVENTORY] * value / ref[t - 1]
            max_short = max_long if p[P_SHORTS] == 1.0 else 0.0
            bid, ask = ref[t - 1] * (1.0 - half), ref[t - 1] * (1.0 + half)
            first = 1 if close[t] >= open_[t] else -1
            for side in (first, -first):
                if side > 0:
                    _quote(state, cfg, fills, t, 1, bid, open_[t], high[t], low[t], quote, max_long)
                else:
                    _quote(state, cfg, fills, t, -1, ask, open_[t], high[t], low[t], quote, max_short)
        if e.daily_loss_breached(state, cfg, close[t]) and state[e.UNITS] != 0.0:
            risk_close = True
        e.end_bar(state, acc, equity_out, position_out, t, close[t])
    e.finish(state, acc, cfg, out)


@register
class MarketMaking(Kernel):
    name = "market_making"
    fills_per_bar = 2
    simulate = simulate

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        if params["reference"] == "ema":
            return [("ema", params["ema_window"])]
        return [("close", 0)]

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        return np.array([params["spread"], params["order_size"], params["max_inventory"],
                         1.0 if params["inventory"] == "both" else 0.0])
