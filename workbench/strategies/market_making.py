"""The ``market_making`` template: a bid and an ask around a reference on every bar.

Semantics (also in ``templates/market_making.json``): quotes at ref[t-1]*(1 -/+ spread/200)
fill when bar t trades through them, bid first on a rising bar, ask first on a falling one.
Short inventory is an unleveraged perpetual: liquidated when a bar reaches its liquidation
price (checked for the inventory held at the bar's open); a ruin stops the run.
Live intent: both quotes as limit orders, each sized as if it filled first (the kernel sizes
the second quote of a bar after the first filled: see ``workbench.live`` on parity).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.engine import core as e
from workbench.strategies._kernel import Kernel, register

P_SPREAD, P_ORDER, P_INVENTORY, P_SHORTS = 0, 1, 2, 3
LEG_RISK, LEG_BID, LEG_ASK = 0, 1, 2  # live intent legs


@njit(cache=True)
def _quote(state, cfg, fills, t, side, limit, open_, high, low, quote, max_units, intent, live):
    price, fee = e.limit_fill(side, limit, open_, high, low, cfg)
    resting = np.isnan(price)
    if resting:
        if not live:
            return
        price, fee = limit, cfg[e.C_FEE_MAKER]  # a live quote rests; sized as if filled first
    # within the inventory limit on its side; what opens a position (long or short) is paid
    # for and within max_position_size (engine.order_units)
    size = e.order_units(state, cfg, side, min(quote, max_units - side * state[e.UNITS]), price, fee)
    if size > 1e-12 * quote:
        e.intend(intent, live, LEG_BID if side > 0 else LEG_ASK, e.ORDER_LIMIT, side * size, price)
        if not resting:
            e.fill(state, cfg, fills, t, side * size, price, fee, e.FILL_ENTRY)


@njit(cache=True)
def simulate(open_, high, low, close, day, funding, ind, rows, p, cfg, fills, equity_out, position_out, out, intent):
    ref = ind[rows[0]]
    half = p[P_SPREAD] / 200.0
    state = e.new_state(cfg)
    metrics = e.new_metrics(cfg)
    daily = e.tracks_daily_loss(cfg)
    recording = equity_out.shape[0] > 0
    mark_open, mark_high, mark_low = e.mark_prices(ind, cfg, open_, high, low)  # liquidation's prices
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
        # short inventory (a perpetual, unleveraged) held into the bar: liquidated if the bar
        # reaches its liquidation price (worst case first: before the quotes; none after it)
        liquidated = state[e.UNITS] < 0.0 and e.liquidation_reached(
            state, cfg, fills, t, mark_open[t], mark_open[t] if risk_close else mark_high[t], mark_low[t]
        )
        if liquidated:
            ruin = e.ruined(state, cfg, t)
            risk_close = False
        elif risk_close:
            e.intend(intent, live, LEG_RISK, e.ORDER_MARKET, -state[e.UNITS], open_[t])
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
                    _quote(state, cfg, fills, t, 1, bid, open_[t], high[t], low[t], quote, max_long, intent, live)
                else:
                    _quote(state, cfg, fills, t, -1, ask, open_[t], high[t], low[t], quote, max_short, intent, live)
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
class MarketMaking(Kernel):
    name = "market_making"
    fills_per_bar = 2
    simulate = simulate
    reads_mark = True
    legs = {LEG_RISK: "risk", LEG_BID: "bid", LEG_ASK: "ask"}
    reducing = {LEG_RISK}

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        if params["reference"] == "ema":
            return [("ema", params["ema_window"])]
        return [("close", 0)]

    @staticmethod
    def can_short(params: Mapping[str, Any]) -> bool:
        return params["inventory"] == "both"

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [
                params["spread"],
                params["order_size"],
                params["max_inventory"],
                1.0 if params["inventory"] == "both" else 0.0,
            ]
        )
