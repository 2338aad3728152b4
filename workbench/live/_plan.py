"""What a strategy wants for the forming bar, computed by the backtest's own kernel.

The session's simulation is the backtest of its strategy over the candles since the
session's anchor (indicators read the warm-up before it), starting from the equity the
session started with, plus the forming bar known only by its open. The kernel runs the
closed bars exactly as ``workbench.backtest`` does and, on the forming bar, writes the
orders that bar needs into its intent array (``workbench.engine.core.intend``): this module turns them
into ``Leg`` records. Nothing here re-implements strategy logic.

Parity with the backtest (proved by tests/test_live.py): a paper session replaying history
trades fill for fill as ``workbench.backtest`` (same bars, sizes, prices and fees, to the
bit), except on a bar where a backtest rule decides on what happens inside the bar, which
orders resting from its open cannot know:

* ``ema_reversal`` places no entry on a bar that had an exit. A bar that reaches a resting
  stop (or take-profit) and a resting dip level fills both on an exchange.
* ``market_making`` sizes a bar's second quote after its first one filled; live, both quotes
  are sized at the open as if each filled first. They differ only where the inventory limit
  or the cash cuts the second quote.

After such a bar the next tick's "sync" leg trades the position back to the simulation's,
and entries the account can no longer pay for are cut to its free balance. Stops rest on the
exchange as its own stop orders (the paper exchange's stop-market order filled with the
engine's stop rule; Binance ``STOP_LOSS_LIMIT`` and USDⓈ-M algo orders; Gate price-triggered
orders: see ``ORDERS.md``); only a session created with ``emulate_stops`` exits on the bar
that reaches its stop and has the next tick's sync leg close at that tick's market price,
one bar late. Liquidations are the exchange's own. Funding is the venue's: the simulation
settles none (a paper session neither).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest._kernel import _Market, _settings, kernel_inputs, run_kernel
from workbench.engine import core as e
from workbench.engine.indicators import lookback
from workbench.strategies import get_template, kernel_for

_WARMUP_SPANS = 3  # an EMA seeded this many spans back has forgotten its seed (weight < e^-6)


@dataclass(frozen=True)
class Leg:
    """One order of the forming bar."""

    name: str  # e.g. "entry", "stop", "tp0", "dip2" (part of the client order id)
    type: str  # "market", "limit" or "stop"
    side: str  # "buy" or "sell"
    amount: Decimal  # base units
    price: Decimal  # limit or stop price; for market orders the reference (the forming open)
    reduce_only: bool


@dataclass(frozen=True)
class Plan:
    """The simulation's position and equity after the last closed bar, and the forming bar's legs."""

    units: float  # signed base units the simulation holds before the forming bar
    equity: float
    legs: list[Leg]
    fills: pd.DataFrame  # every simulated fill (time, size, price, fee, kind), for the record


def warmup_bars(template: str, params: Mapping[str, Any]) -> int:
    """Closed candles the indicators need before the first traded bar."""
    keys = kernel_for(template).indicator_keys(params)
    return _WARMUP_SPANS * max([lookback(key) for key in keys] + [1])


def plan(
    template: str,
    params: Mapping[str, Any],
    risk: Mapping[str, float | None],
    candles: pd.DataFrame,
    anchor: datetime,
    forming_at: datetime,
    forming_open: float,
    init_equity: float,
    *,
    fees: Mapping[str, float],
    slippage: float,
    maintenance_margin: float = 0.005,
) -> Plan:
    """The plan for the bar opening at ``forming_at`` at ``forming_open``, from the closed
    ``candles`` (those before ``anchor`` only warm the indicators up)."""
    tpl = get_template(template)
    params, limits = tpl.validate(params), tpl.validate_risk(risk)
    kernel = kernel_for(tpl.name)
    forming_at = pd.Timestamp(forming_at).tz_convert("UTC").as_unit(candles.index.unit)
    forming = pd.DataFrame(
        {c: [forming_open] for c in ("open", "high", "low", "close")} | {"volume": [0.0]},
        index=pd.DatetimeIndex([forming_at], name=candles.index.name),
    )
    frame = pd.concat([candles, forming])
    frame.attrs = dict(candles.attrs)
    market = _Market(frame, validate=False)  # the exchange validated the closed candles
    settings = _settings(dict(fees), slippage, init_equity, maintenance_margin)
    start = int(frame.index.searchsorted(pd.Timestamp(anchor)))
    inputs = kernel_inputs(kernel, market, [params], settings, limits, start=start)
    run = run_kernel(inputs, live=True)
    n, equity_out, position_out = inputs.bars, run.equity, run.position
    legs = [_leg(kernel, row, forming_open) for row in run.intent]
    recorded = run.recorded_fills
    times = inputs.index[recorded[:, 0].astype(int)]
    table = pd.DataFrame(
        {
            "time": times,
            "size": recorded[:, 1],
            "price": recorded[:, 2],
            "fee": recorded[:, 3],
            "kind": [e.FILL_KINDS[int(k)] for k in recorded[:, 4]],
        }
    )
    before = n - 2  # the last closed bar
    return Plan(
        units=float(position_out[before]) if before >= 0 else 0.0,
        equity=float(equity_out[before]) if before >= 0 else init_equity,
        legs=legs,
        fills=table,
    )


def _leg(kernel, row: np.ndarray, forming_open: float) -> Leg:
    code, size = int(row[e.I_LEG]), float(row[e.I_SIZE])
    kind = e.ORDER_TYPES[int(row[e.I_TYPE])]
    price = forming_open if kind == "market" else float(row[e.I_PRICE])
    return Leg(
        name=kernel.legs[code],
        type=kind,
        side="buy" if size > 0 else "sell",
        amount=Decimal(repr(abs(size))),
        price=Decimal(repr(price)),
        reduce_only=code in kernel.reducing,
    )
