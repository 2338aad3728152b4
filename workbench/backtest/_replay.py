"""Replay a backtest's fills through vectorbt, so its Portfolio analytics see the same run.

One fill per bar goes through ``Portfolio.from_orders`` (compiled once, cached on disk);
bars with several fills (ladders, two-sided quotes) need ``from_order_func`` in flexible
mode, which compiles on first use in each process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import vectorbt as vbt
from numba import njit
from vectorbt.portfolio import nb as portfolio_nb
from vectorbt.portfolio.enums import NoOrder

if TYPE_CHECKING:
    from workbench.backtest._result import BacktestResult


@njit(cache=True)
def _next_fill(c, bars, sizes, prices, fees, cursor):
    k = cursor[0]
    if k < bars.shape[0] and bars[k] == c.i:
        cursor[0] = k + 1
        return 0, portfolio_nb.order_nb(size=sizes[k], price=prices[k], fixed_fees=fees[k])
    return -1, NoOrder


def replay(result: BacktestResult) -> vbt.Portfolio:
    close = result.candles["close"]
    fills = result.fills
    bars = result._fill_bars
    common = dict(init_cash=result.settings["init_cash"], freq=close.index[1] - close.index[0])
    if len(np.unique(bars)) == len(bars):
        n = len(close)
        size, price, fee = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
        size[bars], price[bars], fee[bars] = fills["size"], fills["price"], fills["fee"]
        return vbt.Portfolio.from_orders(
            close, size=size, price=price, fixed_fees=fee, fees=0.0, slippage=0.0, **common
        )
    cursor = np.zeros(1, np.int64)
    return vbt.Portfolio.from_order_func(
        close,
        _next_fill,
        bars,
        fills["size"].to_numpy(),
        fills["price"].to_numpy(),
        fills["fee"].to_numpy(),
        cursor,
        flexible=True,
        max_orders=len(fills),
        **common,
    )
