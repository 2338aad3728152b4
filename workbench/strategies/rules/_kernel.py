"""The ``rules`` kernel: one compiled simulation for every rule strategy.

It reads four signal rows (long entry, long exit, short entry, short exit: 1.0 where the
condition holds at a bar's close, see ``_evaluate``) as the channel kernel reads its bands,
and the actions from the parameter vector. Semantics (also in ``templates/rules.json``):
signals at the close of bar t, market orders at the open of t+1; while a position is open,
a stop (the tighter of the stop-loss and the trailing stop), the liquidation price and the
take-profit ladder are checked inside each bar, worst case first (the stop or the
liquidation: the nearer first); a short is liquidated at leverage 1 too; a ruin stops the run.
Live intent legs: ``exit`` and ``entry`` (market), ``stop`` (stop-market), ``tp0``.. (limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.engine import core as e
from workbench.strategies._kernel import Kernel, register
from workbench.strategies.rules import _evaluate  # noqa: F401 - registers the "rule" signal rows
from workbench.strategies.rules._model import MAX_LADDER, SIDES, resolve, tree

# one block of the parameter vector per side (long at 0, short at BLOCK)
B_ON, B_UNITS, B_SIZE, B_STOP, B_TRAIL, B_TPS, B_TP0 = 0, 1, 2, 3, 4, 5, 6
BLOCK = B_TP0 + MAX_LADDER
LEG_EXIT, LEG_ENTRY, LEG_STOP, LEG_TP0 = 0, 1, 2, 3


@njit(cache=True)
def _enter(state, cfg, fills, t, side, open_, p, b):
    """A market entry at the open: a fraction of the equity, or a fixed number of units
    (as many as the cash pays for, within the position limit)."""
    if p[b + B_UNITS] == 0.0:
        e.market_entry(state, cfg, fills, t, side, open_, p[b + B_SIZE])
        return
    slip = cfg[e.C_SLIPPAGE]
    price = open_ * (1.0 + slip) if side > 0 else open_ * (1.0 - slip)
    units = e.tradeable(
        cfg, min(p[b + B_SIZE], e.entry_units(state, cfg, price, state[e.CASH], cfg[e.C_FEE_TAKER])), price
    )
    if units > 0.0:
        e.fill(state, cfg, fills, t, side * units, price, cfg[e.C_FEE_TAKER], e.FILL_ENTRY)


@njit(cache=True)
def _stop(entry, best, side, p, b):
    """The stop price during a bar: the tighter of the stop-loss (from the average entry) and
    the trailing stop (from the best price up to the previous bar); NaN when neither is set."""
    stop = entry * (1.0 - side * p[b + B_STOP] / 100.0)  # NaN when not set
    trail = best * (1.0 - side * p[b + B_TRAIL] / 100.0)
    if np.isnan(stop):
        return trail
    if np.isnan(trail):
        return stop
    return max(stop, trail) if side > 0 else min(stop, trail)


@njit(cache=True)
def _protect(state, cfg, fills, t, open_, high, low, mark_high, mark_low, p, b, best, tps_done, tp_unit, intent, live):
    """Liquidation (on the mark's high and low) or stop, then take-profits, inside bar t;
    returns (tps_done, tp_unit)."""
    units = state[e.UNITS]
    side = 1 if units > 0.0 else -1
    entry = state[e.ENTRY]
    stop = _stop(entry, best, side, p, b)
    kind, price = e.stop_or_liquidation_marked(state, cfg, stop, open_, high, low, mark_high, mark_low)
    if kind == e.FILL_LIQUIDATION:  # the exchange liquidates: no order of ours
        e.liquidate(state, fills, t, price)
        return tps_done, tp_unit
    if kind == e.FILL_STOP:
        e.intend(intent, live, LEG_STOP, e.ORDER_MARKET, -units, open_)
        e.fill(state, cfg, fills, t, -units, price, cfg[e.C_FEE_TAKER], e.FILL_STOP)
        return tps_done, tp_unit
    if not np.isnan(stop):
        e.intend(intent, live, LEG_STOP, e.ORDER_STOP, -units, stop)
    n_tps = int(p[b + B_TPS])
    while tps_done < n_tps:
        held = abs(state[e.UNITS])
        limit = entry * (1.0 + side * p[b + B_TP0 + tps_done] / 100.0)
        price, fee = e.limit_fill(-side, limit, open_, high, low, cfg)
        unit = e.lot(cfg, held / n_tps) if tps_done == 0 else tp_unit  # whole amount steps
        if np.isnan(price):
            if live:  # the rest of the ladder rests through the bar, each level as it would fill
                for k in range(tps_done, n_tps):
                    size = held if k == n_tps - 1 else min(unit, held)
                    e.intend(
                        intent,
                        True,
                        LEG_TP0 + k,
                        e.ORDER_LIMIT,
                        -side * size,
                        entry * (1.0 + side * p[b + B_TP0 + k] / 100.0),
                    )
                    held -= size
            break
        tp_unit = unit
        size = held if tps_done == n_tps - 1 else min(tp_unit, held)
        e.intend(intent, live, LEG_TP0 + tps_done, e.ORDER_LIMIT, -side * size, price)  # marketable: at the open
        e.fill(state, cfg, fills, t, -side * size, price, fee, e.FILL_TAKE_PROFIT)
        tps_done += 1
        if state[e.UNITS] == 0.0:
            break
    return tps_done, tp_unit


@njit(cache=True)
def simulate(open_, high, low, close, day, funding, ind, rows, p, cfg, fills, equity_out, position_out, out, intent):
    long_entry, long_exit = ind[rows[0]], ind[rows[1]]
    short_entry, short_exit = ind[rows[2]], ind[rows[3]]
    can_long, can_short = p[B_ON] == 1.0, p[BLOCK + B_ON] == 1.0
    # whether a side has anything to check inside a bar (else a position costs nothing extra)
    # (a short is a perpetual, liquidated at any leverage: always checked)
    leveraged = cfg[e.C_LEVERAGE] > 1.0
    guard_long = leveraged or not (np.isnan(p[B_STOP]) and np.isnan(p[B_TRAIL]) and p[B_TPS] == 0.0)
    state = e.new_state(cfg)
    metrics = e.new_metrics(cfg)
    daily = e.tracks_daily_loss(cfg)
    recording = equity_out.shape[0] > 0
    mark_open, mark_high, mark_low = e.mark_prices(ind, cfg, open_, high, low)  # liquidation's prices
    target = 0
    risk_exit = False
    best = np.nan  # the best price since the entry, up to the previous bar (trailing stop)
    tps_done = 0
    tp_unit = 0.0
    ruin = False
    n = close.shape[0]
    last = n - 1 if intent.shape[0] > 0 else -1
    for t in range(n):
        live = t == last
        if daily and day[t] != state[e.DAY]:
            e.new_day(state, day[t], open_[t])
        if funding[t] != 0.0:  # a funding time: the position held into the bar pays or receives
            e.pay_funding(state, cfg, funding[t], open_[t])
        side = 0 if state[e.UNITS] == 0.0 else (1 if state[e.UNITS] > 0.0 else -1)
        if (
            target != side
            and side != 0
            and e.liquidation_reached(state, cfg, fills, t, mark_open[t], mark_open[t], mark_open[t])
        ):
            ruin = e.ruined(state, cfg, t)  # the open gapped through it: no order on this bar
            side = target = 0
        if target != side:
            before = state[e.UNITS]
            e.close_all(state, cfg, fills, t, open_[t], e.FILL_RISK if risk_exit else e.FILL_EXIT)
            e.intend(intent, live, LEG_EXIT, e.ORDER_MARKET, state[e.UNITS] - before, open_[t])
            if target != 0:
                before = state[e.UNITS]
                _enter(state, cfg, fills, t, target, open_[t], p, 0 if target > 0 else BLOCK)
                e.intend(intent, live, LEG_ENTRY, e.ORDER_MARKET, state[e.UNITS] - before, open_[t])
                best = state[e.ENTRY]
                tps_done = 0
        risk_exit = False
        if state[e.UNITS] > 0.0 and guard_long:
            tps_done, tp_unit = _protect(
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
                0,
                best,
                tps_done,
                tp_unit,
                intent,
                live,
            )
            best = max(best, high[t])
            ruin = ruin or e.ruined(state, cfg, t)
        elif state[e.UNITS] < 0.0:
            tps_done, tp_unit = _protect(
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
                BLOCK,
                best,
                tps_done,
                tp_unit,
                intent,
                live,
            )
            best = min(best, low[t])
            ruin = ruin or e.ruined(state, cfg, t)
        side = 0 if state[e.UNITS] == 0.0 else (1 if state[e.UNITS] > 0.0 else -1)
        if daily and e.daily_loss_breached(state, cfg, close[t]):
            state[e.HALTED] = 1.0
        if state[e.HALTED] == 1.0:
            target = 0
            risk_exit = side != 0
        else:  # 1.0 where a condition holds; 0.0, or NaN for a rule not given, never fires
            target = e.target_side(
                side,
                long_entry[t] == 1.0,
                long_exit[t] == 1.0,
                short_entry[t] == 1.0,
                short_exit[t] == 1.0,
                can_long,
                can_short,
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
class Rules(Kernel):
    name = "rules"
    fills_per_bar = 3 + MAX_LADDER  # exit, entry, stop (or liquidation), take-profits
    simulate = simulate
    reads_mark = True
    legs = {
        LEG_EXIT: "exit",
        LEG_ENTRY: "entry",
        LEG_STOP: "stop",
        **{LEG_TP0 + k: f"tp{k}" for k in range(MAX_LADDER)},
    }
    reducing = {LEG_EXIT, LEG_STOP, *range(LEG_TP0, LEG_TP0 + MAX_LADDER)}

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[tuple]:
        rules = resolve(params["rules"])
        keys = []
        for side in SIDES:
            node = rules[side] or {"entry": None, "exit": None}
            keys += [("unused", 0) if node[k] is None else ("rule", tree(node[k])) for k in ("entry", "exit")]
        return keys

    @staticmethod
    def can_short(params: Mapping[str, Any]) -> bool:
        return params["rules"].get("short") is not None

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        rules = resolve(params["rules"])
        p = np.full(2 * BLOCK, np.nan)
        for b, side in zip((0, BLOCK), SIDES):
            node = rules[side]
            p[b + B_ON] = node is not None
            if node is None:
                continue
            kind, amount = next(iter(node["size"].items()))
            p[b + B_UNITS] = kind == "units"
            p[b + B_SIZE] = amount / 100.0 if kind == "percent" else amount
            p[b + B_STOP] = np.nan if node["stop_loss"] is None else node["stop_loss"]
            p[b + B_TRAIL] = np.nan if node["trailing_stop"] is None else node["trailing_stop"]
            p[b + B_TPS] = len(node["take_profit"])
            p[b + B_TP0 : b + B_TP0 + len(node["take_profit"])] = node["take_profit"]
        return p

    @staticmethod
    def strategy_leverage(params: Mapping[str, Any]) -> float | None:
        return float(resolve(params["rules"])["leverage"])
