"""The simulation core every template kernel shares: margin accounting, fills, metrics.

Each template is a numba kernel that walks the bars once and calls the helpers here to
fill orders and to accumulate metrics. The same kernel serves ``backtest`` (one run,
recording every fill and the equity curve) and ``sweep`` (thousands of runs in parallel,
recording nothing but the metrics), so a sweep row is bit-for-bit what ``backtest`` gives.

Accounting model (documented in README "How backtests account"):

* A position has signed ``units``, an average ``entry`` price and the ``margin`` it locks.
  Opening ``q`` units at price ``p`` with leverage ``L`` locks ``q*p/L`` of cash as margin
  and pays ``q*p*fee``. Equity is ``cash + margin + units*(price - entry)``.
* At ``L == 1`` this is exactly spot accounting (and vectorbt's): longs pay the full
  notional, shorts post it as collateral.
* At ``L > 1`` the position is an isolated-margin perpetual, liquidated at its liquidation
  price (``liquidation_price``); the margin is lost (the liquidation fill's fee column holds
  what the position still held, kept by the exchange; it counts in ``liquidation_loss``, not
  in ``fees_paid``). With a single maintenance margin rate ``mmr`` (a float) the price is the
  approximation ``entry*(1 - 1/L + mmr)`` (longs) or ``entry*(1 + 1/L - mmr)`` (shorts).
  With the venue's maintenance margin tiers (``(notional_floor, rate, amount)`` rows, after
  the slots ``CFG_SIZE``) it is what the venue computes for an isolated position of ``Q``
  units at ``entry`` holding ``margin``: the price ``P`` at which
  ``margin + side*Q*(P - entry) = Q*P*rate - amount`` with the tier that holds the notional
  ``Q*P``, that is ``P = (side*Q*entry - margin - amount) / (Q*(side - rate))``
  (``side`` +1 long, -1 short; Binance's ``maintMarginRatio`` and ``cum``).
* A short is a perpetual at any leverage (a spot account cannot short): at ``L == 1`` it is
  liquidated like any short (with one rate at ``entry*(2 - mmr)``), so it never loses more
  than its collateral. An unleveraged long is spot and cannot be liquidated.
* Liquidation is judged on the bar's mark price when the run has one (``mark_prices``: the
  mark's open, high and low rows appended to the indicators), else on the traded price (the
  approximation: the last price stands in for the mark). Stops and limits always fill on
  the traded price.
* A protective stop and the liquidation: the nearer price fills first (the stop at its
  usual price, the open when the bar gaps through both; the liquidation at its price).
* Ruin: when a fill leaves the account flat with no equity (at most 1e-9 of the initial
  cash), the run stops trading; the rest of the curve is flat at that value (bars of zero
  return in the metrics) and ``ruined`` is 1.

Live intent: a live session runs the same kernel over the closed candles plus the forming
bar (known so far: its open, so ``high == low == close == open``) and passes an ``intent``
array (empty in backtests and sweeps, so they pay one comparison per bar). On that last
bar each kernel writes the orders the bar needs with ``intend``: what it fills at the open
(market orders, marketable limits) and what must rest through the bar (limits, stops),
with the sizes its own sizing rules give (``workbench.live`` sends them).

The per-bar hot path: a sweep spends nearly all its time in the few lines every bar runs,
and a helper that *writes* into an array costs about 10 ns per call there (numba does not
inline it and keeps the array's reference count), more than the bar's own work. So what
runs on every bar only reads the state (``equity``, ``daily_loss_breached``) or works on
scalars (the metric sums travel as a tuple through ``mark``); the kernels record the curves
themselves, and the writers (``fill``, ``new_day``...) run only when something happens.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numba.core import caching

# -- a compiled cache that follows the engine's source -----------------------------------
# numba's ``cache=True`` keys a function's cache on its own file's mtime and size only: a
# template kernel compiled into its cache with this engine's helpers inlined would be loaded
# unchanged after this file changed. So every cached function of the workbench package is
# kept in a directory named by a hash of every source of the package that compiles numba
# code (this file, the indicators, the template kernels, research's compiled loops): any edit
# there compiles into a fresh directory, never into a stale one.


def source_digest(sources: Iterable[str | os.PathLike]) -> str:
    """A short hash of the files' names and contents (in path order)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def kernel_sources(package: str | os.PathLike) -> list[Path]:
    """The files under ``package`` that compile numba code."""
    return [
        path
        for path in sorted(Path(package).rglob("*.py"))
        if "njit" in path.read_text(encoding="utf-8", errors="replace")
    ]


def use_hashed_cache(
    package: str | os.PathLike, sources: Iterable[str | os.PathLike], base: str | os.PathLike | None = None
) -> Path:
    """Keep the numba cache of every function defined under ``package`` (decorated from now
    on) in ``<base>/numba-<hash of sources>``; returns that directory. ``base`` defaults to
    ``NUMBA_CACHE_DIR`` if set, else ``package/__pycache__`` or, where that cannot be written
    (a read-only install), ``~/.cache/workbench``. Old directories are left in place (another
    process may still run the code they belong to)."""
    package = os.path.realpath(package)
    name = f"numba-{source_digest(sources)}"
    if base is not None:
        bases = [base]
    elif os.environ.get("NUMBA_CACHE_DIR"):
        bases = [os.environ["NUMBA_CACHE_DIR"]]
    else:
        bases = [os.path.join(package, "__pycache__"), os.path.join(Path.home(), ".cache", "workbench")]
    root = next((Path(b) / name for b in bases if _writable(Path(b) / name)), Path(bases[0]) / name)

    class _HashedLocator(caching.UserProvidedCacheLocator):
        workbench_package: str  # set below: the package whose locator this is

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.exists(py_file) or not os.path.realpath(py_file).startswith(package + os.sep):
                return None
            locator = cls(py_func, py_file)
            try:
                locator.ensure_cache_path()
            except OSError:
                return None
            return locator

    locators = caching.CacheImpl._locator_classes
    locators[:] = [c for c in locators if getattr(c, "workbench_package", None) != package]
    _HashedLocator.workbench_package = package
    locators.insert(0, _HashedLocator)
    return root


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


_PACKAGE = Path(__file__).resolve().parent.parent
CACHE_DIR = use_hashed_cache(_PACKAGE, kernel_sources(_PACKAGE))

from numba import njit  # noqa: E402 - the cache locator is in place before anything compiles

# -- the state vector of one run (float64 slots) -----------------------------------------
CASH = 0
UNITS = 1
ENTRY = 2
MARGIN = 3
FEES = 4
TRADE_PNL = 5  # realised PnL (net of fees) of the trade now open
TRADES = 6
WINS = 7
GROSS_WIN = 8
GROSS_LOSS = 9
LIQUIDATIONS = 10
N_FILLS = 11
DAY = 12  # current UTC day number, for the daily-loss limit
DAY_START_EQUITY = 13
HALTED = 14  # 1 while the daily-loss limit stops new entries until the next day
LIQUIDATION_LOSS = 15  # margin lost to liquidations
RUIN_BAR = 16  # bar + 1 of the ruin, 0 while the account stands
FUNDING = 17  # funding paid (received: negative), quote currency
STATE_SIZE = 18

# -- the run settings vector (float64 slots) ---------------------------------------------
C_INIT_CASH = 0
C_FEE_TAKER = 1
C_FEE_MAKER = 2
C_SLIPPAGE = 3
C_LEVERAGE = 4
C_MMR = 5  # maintenance margin rate
C_ANN_FACTOR = 6  # bars per year (Sharpe, Sortino)
C_MAX_POSITION = 7  # max notional (quote currency), inf = no limit
C_MAX_DAILY_LOSS = 8  # quote currency, inf = no limit
C_RISK_FREE = 9  # the risk-free return per bar (Sharpe, Sortino)
C_YEARS = 10  # the calendar time the candles span, in years (CAGR)
# the market's rules (0: none): amounts are multiples of the step, orders that open or add
# are at least the minimum amount and cost, limit and stop prices sit on the tick
C_AMOUNT_STEP = 11
C_PRICE_STEP = 12
C_MIN_AMOUNT = 13
C_MIN_COST = 14
C_MARK_ROW = 15  # 1 + the indicator row of the mark's open (its high and low follow); 0: no mark
C_TIERS = 16  # maintenance margin tiers after CFG_SIZE (0: the single rate C_MMR, the approximation)
CFG_SIZE = 17
# each tier: the notional it starts at, its maintenance margin rate, its maintenance amount
T_FLOOR = 0
T_RATE = 1
T_AMOUNT = 2
TIER_WIDTH = 3

# -- fill kinds --------------------------------------------------------------------------
FILL_ENTRY = 0
FILL_EXIT = 1
FILL_STOP = 2
FILL_TAKE_PROFIT = 3
FILL_LIQUIDATION = 4
FILL_RISK = 5  # closed by the daily-loss limit
FILL_KINDS = ("entry", "exit", "stop_loss", "take_profit", "liquidation", "risk_limit")

# -- live intent rows: (leg, order type, signed size, price) -----------------------------
I_LEG = 0
I_TYPE = 1
I_SIZE = 2
I_PRICE = 3
INTENT_WIDTH = 4
INTENT_ROWS = 24  # more than any kernel intends for one bar
ORDER_MARKET = 0
ORDER_LIMIT = 1
ORDER_STOP = 2  # stop-market: triggers when the bar trades through the price (see stop_fill)
ORDER_TYPES = ("market", "limit", "stop")

METRIC_NAMES = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "expectancy",
    "exposure",
    "trades",
    "fees_paid",
    "liquidations",
    "final_equity",
    "fills",
    "liquidation_loss",
    "ruined",
    "funding_paid",
)
N_METRICS = len(METRIC_NAMES)
# each metric's slot in the output row, taken from METRIC_NAMES so a name added anywhere in
# it cannot shift another metric under the wrong label
M_TOTAL_RETURN = METRIC_NAMES.index("total_return")
M_CAGR = METRIC_NAMES.index("cagr")
M_SHARPE = METRIC_NAMES.index("sharpe")
M_SORTINO = METRIC_NAMES.index("sortino")
M_CALMAR = METRIC_NAMES.index("calmar")
M_MAX_DRAWDOWN = METRIC_NAMES.index("max_drawdown")
M_WIN_RATE = METRIC_NAMES.index("win_rate")
M_PROFIT_FACTOR = METRIC_NAMES.index("profit_factor")
M_EXPECTANCY = METRIC_NAMES.index("expectancy")
M_EXPOSURE = METRIC_NAMES.index("exposure")
M_TRADES = METRIC_NAMES.index("trades")
M_FEES_PAID = METRIC_NAMES.index("fees_paid")
M_LIQUIDATIONS = METRIC_NAMES.index("liquidations")
M_FINAL_EQUITY = METRIC_NAMES.index("final_equity")
M_FILLS = METRIC_NAMES.index("fills")
M_LIQUIDATION_LOSS = METRIC_NAMES.index("liquidation_loss")
M_RUINED = METRIC_NAMES.index("ruined")
M_FUNDING_PAID = METRIC_NAMES.index("funding_paid")


@njit(cache=True)
def new_state(cfg):
    state = np.zeros(STATE_SIZE)
    state[CASH] = cfg[C_INIT_CASH]
    state[DAY] = -1.0
    return state


@njit(cache=True)
def equity(state, price):
    return state[CASH] + state[MARGIN] + state[UNITS] * (price - state[ENTRY])


@njit(cache=True)
def _record(state, fills, bar, size, price, fee, kind):
    k = int(state[N_FILLS])
    if k < fills.shape[0]:
        fills[k, 0] = bar
        fills[k, 1] = size
        fills[k, 2] = price
        fills[k, 3] = fee
        fills[k, 4] = kind
    state[N_FILLS] = k + 1


@njit(cache=True)
def _close_trade(state):
    pnl = state[TRADE_PNL]
    state[TRADES] += 1
    if pnl > 0:
        state[WINS] += 1
        state[GROSS_WIN] += pnl
    else:
        state[GROSS_LOSS] -= pnl
    state[TRADE_PNL] = 0.0
    state[ENTRY] = 0.0
    state[MARGIN] = 0.0
    state[UNITS] = 0.0


@njit(cache=True)
def fill(state, cfg, fills, bar, size, price, fee_rate, kind):
    """Trade ``size`` units (positive buys) at ``price``; a reversal closes then opens."""
    if size == 0.0:
        return
    fee = abs(size) * price * fee_rate
    state[FEES] += fee
    _record(state, fills, bar, size, price, fee, kind)
    units = state[UNITS]
    remaining = size
    if units != 0.0 and (units > 0.0) != (size > 0.0):
        closing = min(abs(size), abs(units))
        direction = 1.0 if units > 0.0 else -1.0
        realised = closing * (price - state[ENTRY]) * direction
        released = state[MARGIN] * closing / abs(units)
        share = fee * closing / abs(size)
        state[CASH] += released + realised - share
        state[TRADE_PNL] += realised - share
        state[MARGIN] -= released
        state[UNITS] = units - direction * closing
        remaining = size + direction * closing
        if abs(state[UNITS]) <= 1e-12 * closing:
            _close_trade(state)
    if remaining != 0.0:
        share = fee * abs(remaining) / abs(size)
        notional = abs(remaining) * price
        margin = notional / cfg[C_LEVERAGE]
        held = abs(state[UNITS])
        state[ENTRY] = (state[ENTRY] * held + price * abs(remaining)) / (held + abs(remaining))
        state[UNITS] += remaining
        state[MARGIN] += margin
        state[CASH] -= margin + share
        state[TRADE_PNL] -= share


@njit(cache=True)
def pay_funding(state, cfg, rate, price):
    """Settle a funding payment on the open perpetual position: a long pays ``rate`` times its
    notional at ``price`` to the shorts, a short receives it (the reverse when the rate is
    negative), from the account's cash, as Binance USDⓈ-M and Gate perpetuals settle it. An
    unleveraged long is spot and pays nothing. The payment counts in the trade's ``pnl``."""
    units = state[UNITS]
    if units == 0.0 or (units > 0.0 and cfg[C_LEVERAGE] <= 1.0):
        return
    amount = units * price * rate
    state[CASH] -= amount
    state[FUNDING] += amount
    state[TRADE_PNL] -= amount


@njit(cache=True)
def liquidation_price(state, cfg):
    """The price at which the open position is liquidated; NaN when it cannot be (flat, or
    an unleveraged long: spot). A short is a perpetual at any leverage, 1 included.

    With one rate (no tiers) the approximation ``entry*(1 -/+ 1/L +/- mmr)``; with tiers the
    venue's exact price (``tiered_liquidation_price``)."""
    lev = cfg[C_LEVERAGE]
    units = state[UNITS]
    if cfg[C_TIERS] > 0.0 and (units < 0.0 or (units > 0.0 and lev > 1.0)):
        return tiered_liquidation_price(cfg, units, state[ENTRY], state[MARGIN])
    if units > 0.0 and lev > 1.0:
        return state[ENTRY] * (1.0 - 1.0 / lev + cfg[C_MMR])
    if units < 0.0:
        return state[ENTRY] * (1.0 + 1.0 / lev - cfg[C_MMR])
    return np.nan


@njit(cache=True)
def tiered_liquidation_price(cfg, units, entry, margin):
    """The price ``P`` where an isolated position of ``units`` (signed) at ``entry`` holding
    ``margin`` has its margin plus PnL down to the maintenance margin of its notional at ``P``:
    ``margin + side*Q*(P - entry) = Q*P*rate - amount`` (the tier holding ``Q*P``), so
    ``P = (side*Q*entry - margin - amount) / (Q*(side - rate))``.

    The maintenance margin ``max(N*rate - amount)`` over the tiers is continuous and convex
    in the notional ``N`` (each amount continues the tier below; ``_venues`` checks it), and
    each tier's line lies on or below it: each tier's solution lies beyond the true price, so
    the true one is the highest of them for a long, the lowest for a short (no search)."""
    side = 1.0 if units > 0.0 else -1.0
    q = abs(units)
    best = np.nan
    for i in range(int(cfg[C_TIERS])):
        k = CFG_SIZE + i * TIER_WIDTH
        price = (side * q * entry - margin - cfg[k + T_AMOUNT]) / (q * (side - cfg[k + T_RATE]))
        if i == 0 or (price > best if side > 0.0 else price < best):
            best = price
    return best


@njit(cache=True)
def liquidate(state, fills, bar, price):
    """Close the whole position at ``price``, losing its margin (isolated margin).

    What the position still held at ``price`` stays with the exchange: it is the fill's fee
    column and part of ``liquidation_loss`` (the whole margin), not a trading fee.
    """
    units = state[UNITS]
    left = state[MARGIN] + units * (price - state[ENTRY])
    state[LIQUIDATIONS] += 1
    state[LIQUIDATION_LOSS] += state[MARGIN]
    _record(state, fills, bar, -units, price, max(left, 0.0), FILL_LIQUIDATION)
    state[TRADE_PNL] -= state[MARGIN]
    _close_trade(state)


@njit(cache=True)
def liquidation_reached(state, cfg, fills, bar, open_, high, low):
    """Liquidate the open position if the bar reaches its liquidation price; whether it did.

    Called with ``high == low == open`` for a position an order closes at the open: a bar
    that opens through the liquidation price liquidates it before the order can.
    """
    kind, price = stop_or_liquidation(state, cfg, np.nan, open_, high, low)
    if kind == FILL_LIQUIDATION:
        liquidate(state, fills, bar, price)
        return True
    return False


@njit(cache=True)
def ruined(state, cfg, bar):
    """Whether the account is ruined: flat with no equity left (at most 1e-9 of the initial
    cash: rounding dust); records the bar. Called after the fills that can lose it all."""
    if state[UNITS] == 0.0 and state[CASH] <= cfg[C_INIT_CASH] * 1e-9:
        state[RUIN_BAR] = bar + 1.0
        return True
    return False


@njit(cache=True)
def rest_after_ruin(m, bar, n, value, equity_out, position_out):
    """The bars after a ruin at ``bar`` (itself already marked) up to ``n``: flat at ``value``,
    nothing traded, each a bar of zero return in the metric sums ``m``; returns the new sums."""
    if equity_out.shape[0] > 0:
        equity_out[bar + 1 :] = value
        position_out[bar + 1 :] = 0.0
    bars, s1, s2, down, peak, max_dd, prev, held, moved, rf = m
    return (bars + (n - bar - 1), s1, s2, down, peak, max_dd, prev, held, moved, rf)


@njit(cache=True)
def entry_units(state, cfg, price, budget, fee_rate):
    """Units that ``budget`` of cash buys as margin plus fee, within the position limit.

    The fee comes out of the budget, as in vectorbt's all-in sizing, so a budget equal
    to the cash at leverage 1 spends exactly the cash.
    """
    return _affordable(cfg, state[CASH], abs(state[UNITS]), price, budget, fee_rate)


@njit(cache=True)
def lot(cfg, units):
    """``units`` rounded down to the market's amount step (unchanged without one), as the
    exchange adapter truncates an order's amount."""
    step = cfg[C_AMOUNT_STEP]
    if step > 0.0:
        return np.floor(units / step + 1e-9) * step
    return units


@njit(cache=True)
def on_tick(cfg, price):
    """``price`` on the market's price tick, the nearest one (ccxt's ``price_to_precision``)."""
    step = cfg[C_PRICE_STEP]
    if step > 0.0:
        return np.round(price / step) * step
    return price


@njit(cache=True)
def _affordable(cfg, cash, held, price, budget, fee_rate):
    """Units that ``budget`` (at most ``cash``) buys at ``price`` on top of ``held`` units,
    keeping the absolute notional within the position limit, in whole amount steps; 0 when
    that is below the market's minimum amount or cost (the exchange would refuse it)."""
    budget = min(budget, cash)
    if budget <= cfg[C_INIT_CASH] * 1e-9:  # rounding dust after a total loss is no budget
        return 0.0
    units = budget / (price * (1.0 / cfg[C_LEVERAGE] + fee_rate))
    room = cfg[C_MAX_POSITION] - held * price
    if units * price > room:
        units = max(room, 0.0) / price
    return tradeable(cfg, units, price)


@njit(cache=True)
def tradeable(cfg, units, price):
    """``units`` to open or add at ``price`` in whole amount steps, or 0 when that is below the
    market's minimum amount or cost (the exchange would refuse the order)."""
    units = lot(cfg, units)
    if units < cfg[C_MIN_AMOUNT] or units * price < cfg[C_MIN_COST]:
        return 0.0
    return units


@njit(cache=True)
def order_units(state, cfg, side, size, price, fee_rate):
    """``size`` units of an order on ``side`` (+1 buy, -1 sell) cut to what the account allows.

    What it closes of the position always fills; what it opens (or adds), long or short,
    must be paid for (margin and fee; in a reversal from the cash the close frees) and keeps
    the position's absolute notional within max_position_size.
    """
    units = state[UNITS]
    against = max(-side * units, 0.0)  # what the order can close
    closing = min(size, against)
    if closing == 0.0:  # it opens or grows the position
        return tradeable(
            cfg, min(size, entry_units(state, cfg, price, size * price * (1.0 + fee_rate), fee_rate)), price
        )
    if size <= against:  # a partial close is in whole amount steps; a full close is the position
        return size if size == against else lot(cfg, size)
    opening = size - closing  # a reversal: once flat, the position's equity is cash, less the close's fee
    cash = equity(state, price) - closing * price * fee_rate
    return closing + tradeable(
        cfg, min(opening, _affordable(cfg, cash, 0.0, price, opening * price * (1.0 + fee_rate), fee_rate)), price
    )


@njit(cache=True)
def tracks_daily_loss(cfg):
    """Whether the run has a daily-loss limit (the kernels skip the daily bookkeeping if not)."""
    return cfg[C_MAX_DAILY_LOSS] != np.inf


@njit(cache=True)
def new_day(state, day, price):
    """Roll the daily-loss window over: call on the first bar of a UTC day (``day != state[DAY]``)."""
    state[DAY] = day
    state[DAY_START_EQUITY] = equity(state, price)
    state[HALTED] = 0.0


@njit(cache=True)
def daily_loss_breached(state, cfg, price):
    """True on the bar today's loss first reaches the limit; the kernel then sets ``HALTED``
    (no new entries until the next day) and flattens."""
    return state[HALTED] == 0.0 and state[DAY_START_EQUITY] - equity(state, price) >= cfg[C_MAX_DAILY_LOSS]


@njit(cache=True)
def close_all(state, cfg, fills, bar, price, kind):
    """Market-close the whole position at ``price`` with slippage and the taker fee."""
    units = state[UNITS]
    if units == 0.0:
        return
    slip = cfg[C_SLIPPAGE]
    fill_price = price * (1.0 - slip) if units > 0.0 else price * (1.0 + slip)
    fill(state, cfg, fills, bar, -units, fill_price, cfg[C_FEE_TAKER], kind)


@njit(cache=True)
def market_entry(state, cfg, fills, bar, side, price, fraction):
    """Open ``side`` (+1 long, -1 short) at ``price`` with adverse slippage, ``fraction`` of equity."""
    slip = cfg[C_SLIPPAGE]
    fill_price = price * (1.0 + slip) if side > 0 else price * (1.0 - slip)
    budget = equity(state, fill_price) * fraction
    units = entry_units(state, cfg, fill_price, budget, cfg[C_FEE_TAKER])
    if units > 0.0:
        fill(state, cfg, fills, bar, side * units, fill_price, cfg[C_FEE_TAKER], FILL_ENTRY)


@njit(cache=True)
def limit_fill(side, limit, open_, high, low, cfg):
    """Where a resting limit order fills in a bar: (price, fee rate), or (NaN, 0) if it does not.

    A bar that opens through the limit fills at the open as a taker; one that trades
    through it later fills at the limit (on the market's tick) as a maker.
    """
    limit = on_tick(cfg, limit)
    if side > 0:
        if open_ <= limit:
            return open_, cfg[C_FEE_TAKER]
        if low <= limit:
            return limit, cfg[C_FEE_MAKER]
    else:
        if open_ >= limit:
            return open_, cfg[C_FEE_TAKER]
        if high >= limit:
            return limit, cfg[C_FEE_MAKER]
    return np.nan, 0.0


@njit(cache=True)
def stop_fill(side, stop, open_, high, low, cfg):
    """Where a resting stop-market order fills in a bar, or NaN if the bar does not reach it.

    A sell stop (closing a long) triggers when the low reaches the stop and fills at
    ``min(open, stop)`` (the open when the bar gaps through it) less slippage, as a taker;
    a buy stop mirrors it. The stop sits on the market's tick.
    """
    slip = cfg[C_SLIPPAGE]
    stop = on_tick(cfg, stop)
    if side < 0:
        if low <= stop:
            return min(open_, stop) * (1.0 - slip)
    elif high >= stop:
        return max(open_, stop) * (1.0 + slip)
    return np.nan


@njit(cache=True)
def stop_or_liquidation(state, cfg, stop, open_, high, low):
    """Which protective exit of the open position a bar triggers: ``(FILL_LIQUIDATION, price)``,
    ``(FILL_STOP, fill price)`` or ``(-1, NaN)``. ``stop`` is the stop price (NaN: none).

    The nearer price fills first, as on an exchange: a resting stop nearer than the
    liquidation price triggers first and fills at its usual price (the open, less slippage,
    when the bar gaps through both); otherwise the exchange liquidates at its liquidation
    price (also when the bar gaps through it). A tie goes to the liquidation.
    """
    return stop_or_liquidation_marked(state, cfg, stop, open_, high, low, high, low)


@njit(cache=True)
def stop_or_liquidation_marked(state, cfg, stop, open_, high, low, mark_high, mark_low):
    """``stop_or_liquidation`` with the liquidation judged on the bar's mark price range
    (``mark_high``, ``mark_low``) and the stop on the traded one (``high``, ``low``).

    A stop the traded price reaches, nearer than the liquidation price, fills first; else a
    mark that reaches the liquidation price liquidates (whether the traded price reaches it
    or not); a traded price through the liquidation price whose mark stays away does not.
    """
    units = state[UNITS]
    side = -1 if units > 0.0 else 1  # the stop closes the position
    price = np.nan if np.isnan(stop) else stop_fill(side, stop, open_, high, low, cfg)
    liq = liquidation_price(state, cfg)
    if not np.isnan(liq):
        stopped = not np.isnan(price)
        if units > 0.0:
            if mark_low <= liq and not (stopped and stop > liq):
                return FILL_LIQUIDATION, liq
        elif mark_high >= liq and not (stopped and stop < liq):
            return FILL_LIQUIDATION, liq
    if not np.isnan(price):
        return FILL_STOP, price
    return -1, np.nan


@njit(cache=True)
def mark_prices(ind, cfg, open_, high, low):
    """The arrays liquidation is judged on: the mark's open, high and low (the indicator rows
    from ``cfg[C_MARK_ROW] - 1``) when the run has a mark price, else the traded ones."""
    row = int(cfg[C_MARK_ROW]) - 1
    if row >= 0:
        return ind[row], ind[row + 1], ind[row + 2]
    return open_, high, low


@njit(cache=True)
def target_side(side, long_entry, long_exit, short_entry, short_exit, can_long, can_short):
    """The side (+1 long, -1 short, 0 flat) a signal strategy wants after a bar's close.

    Exits first; from flat, a long entry wins over a short one; an opposite entry reverses
    the position unless both entries fire at once (then it stays).
    """
    if side > 0 and long_exit:
        side = 0
    elif side < 0 and short_exit:
        side = 0
    if side == 0:
        if can_long and long_entry:
            return 1
        if can_short and short_entry:
            return -1
    elif side > 0 and can_short and short_entry and not long_entry:
        return -1
    elif side < 0 and can_long and long_entry and not short_entry:
        return 1
    return side


@njit(cache=True)
def intend(intent, live, leg, order_type, size, price):
    """Append an order to a live session's ``intent`` (no-op unless ``live``, or for size 0)."""
    if not live or size == 0.0:
        return
    for k in range(intent.shape[0]):
        if np.isnan(intent[k, I_LEG]):
            intent[k, I_LEG] = leg
            intent[k, I_TYPE] = order_type
            intent[k, I_SIZE] = size
            intent[k, I_PRICE] = price
            return


@njit(cache=True)
def new_metrics(cfg):
    """The running metric sums, a tuple the kernel carries from bar to bar (see ``mark``):
    bars, sum of returns, sum of squared returns, sum of squared returns below the risk-free
    return, equity peak, max drawdown, last equity, bars exposed, bars whose equity moved, the
    risk-free return per bar. Plain sums keep the update free of a division chain."""
    init = cfg[C_INIT_CASH]
    return (0.0, 0.0, 0.0, 0.0, init, 0.0, init, 0.0, 0.0, cfg[C_RISK_FREE])


@njit(cache=True)
def mark(m, value, exposed):
    """Fold a bar's closing equity ``value`` into the metric sums ``m``; returns the new sums.

    A bar whose equity did not move (flat, or an unchanged close) costs no division: its
    return is 0, which ``finish`` counts in from the number of bars that moved.
    """
    bars, s1, s2, down, peak, max_dd, prev, held, moved, rf = m
    bars += 1.0
    if exposed:
        held += 1.0
    if value != prev:
        moved += 1.0
        ret = value / prev - 1.0 if prev > 0.0 else 0.0
        s1 += ret
        s2 += ret * ret
        shortfall = min(ret - rf, 0.0)  # no branch: the sign of a return is a coin flip to the predictor
        down += shortfall * shortfall
        peak = max(peak, value)
        if value < peak * (1.0 - max_dd) and peak > 0.0:  # rare: a deeper drawdown
            max_dd = 1.0 - value / peak
        prev = value
    return (bars, s1, s2, down, peak, max_dd, prev, held, moved, rf)


@njit(cache=True)
def finish(state, m, cfg, out):
    """Write the run's metrics into their slots of ``out`` (see METRIC_NAMES) from the sums ``m``.
    The conventions are written down in ``docs/METRICS.md``."""
    n, s1, s2, down_sq, _, max_dd, last, held, moved, rf = m
    ann = cfg[C_ANN_FACTOR]
    years = cfg[C_YEARS]
    total = last / cfg[C_INIT_CASH] - 1.0
    out[M_TOTAL_RETURN] = total
    cagr = (1.0 + total) ** (1.0 / years) - 1.0 if years > 0.0 and total > -1.0 else -1.0
    out[M_CAGR] = cagr
    mean = s1 / n if n > 0 else np.nan
    std = np.sqrt(max(s2 - s1 * mean, 0.0) / (n - 1.0)) if n > 1 else np.nan
    out[M_SHARPE] = (mean - rf) / std * np.sqrt(ann) if std > 0.0 else np.nan
    still = min(-rf, 0.0)  # a bar whose equity did not move fell short of a positive risk-free return
    down = np.sqrt((down_sq + (n - moved) * still * still) / n) if n > 0 else np.nan
    out[M_SORTINO] = (mean - rf) / down * np.sqrt(ann) if down > 0.0 else np.nan
    out[M_CALMAR] = cagr / max_dd if max_dd > 0.0 else np.nan
    out[M_MAX_DRAWDOWN] = max_dd
    trades = state[TRADES]
    out[M_WIN_RATE] = state[WINS] / trades if trades > 0 else np.nan
    out[M_PROFIT_FACTOR] = state[GROSS_WIN] / state[GROSS_LOSS] if state[GROSS_LOSS] > 0.0 else np.nan
    out[M_EXPECTANCY] = (state[GROSS_WIN] - state[GROSS_LOSS]) / trades if trades > 0 else np.nan
    out[M_EXPOSURE] = held / n if n > 0 else np.nan
    out[M_TRADES] = trades
    out[M_FEES_PAID] = state[FEES]
    out[M_LIQUIDATIONS] = state[LIQUIDATIONS]
    out[M_FINAL_EQUITY] = last
    out[M_FILLS] = state[N_FILLS]
    out[M_LIQUIDATION_LOSS] = state[LIQUIDATION_LOSS]
    out[M_RUINED] = 1.0 if state[RUIN_BAR] > 0.0 else 0.0
    out[M_FUNDING_PAID] = state[FUNDING]
