"""The one way to call a template kernel: ``backtest``, ``sweep`` and a live session's plan
build their arguments with :func:`kernel_inputs` and run them with :func:`run_kernel` (one
run, recorded) or :func:`run_kernels` (many in parallel, metrics only).

The kernel's own signature (``workbench.strategies._kernel``) is positional and long; it is
written out here and nowhere else in the package::

    inputs = kernel_inputs(kernel, _Market(candles, funding=...), combos, settings, limits, mark=...)
    run = run_kernel(inputs)              # run.metrics["sharpe"], run.equity, run.fills ...
    run_kernels(inputs, out, 0, inputs.runs)  # out[j, e.M_SHARPE] ...

Settings (fees, slippage, cash, the maintenance margin and the market's rules) become one
float vector per run (``_cfg``, slots ``C_*`` of the engine); the candles, their funding, every
indicator the runs need (computed once, shared) and the mark price rows are the arrays all the
runs read. Metrics come back in their named slots (``M_*``, ``METRIC_NAMES``), never by position.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from workbench.backtest._funding import funding_per_bar
from workbench.backtest._venues import MarketRules, describe_maintenance, maintenance_tiers, tier_checks, venue_fees
from workbench.engine import core as e
from workbench.engine.indicators import IndicatorKey, stack
from workbench.errors import ParameterError

# Idle OpenMP threads must sleep, not spin: a spinning thread steals the core that a sweep's
# other thread (and, on a hub, another tenant's kernel) needs. Set before numba first loads its
# OpenMP layer (at the first parallel run); explicit settings win.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "0")

_YEAR = pd.Timedelta(days=365)  # crypto trades every day; vectorbt's default year too


def _settings(
    fees: float | str | Mapping[str, float],
    slippage: float,
    init_cash: float,
    maintenance_margin: Any,
    risk_free: float = 0.0,
    market: MarketRules | None = None,
) -> dict[str, Any]:
    """The run's settings, checked, as JSON (what a result and a listing record)."""
    if isinstance(fees, str):
        fees = venue_fees(fees, market)
    if isinstance(fees, Mapping):
        unknown = set(fees) - {"maker", "taker"}
        if unknown:
            raise ParameterError(
                f"fees: unknown key {sorted(unknown)[0]!r}; use 'maker' and 'taker'", param="fees", value=fees
            )
        missing = [side for side in ("maker", "taker") if side not in fees]
        if missing:  # a rate left out is not free: say so rather than trade it at 0
            raise ParameterError(
                f"fees: {dict(fees)!r} has no {missing[0]!r} rate; give both 'maker' and "
                "'taker', or one number for both",
                param="fees",
                value=fees,
            )
        maker, taker = fees["maker"], fees["taker"]
    else:
        maker = taker = fees
    # a maker rate may be a rebate (Gate's perpetual VIP tiers pay makers)
    checks = {
        "fees (maker)": (maker, -0.01, 0.1),
        "fees (taker)": (taker, 0.0, 0.1),
        "slippage": (slippage, 0.0, 0.1),
        "init_cash": (init_cash, 1e-9, 1e15),
        "risk_free": (risk_free, -0.5, 1.0),
    }
    if maintenance_tiers(maintenance_margin) is None:  # one rate (tiers are checked by maintenance_tiers)
        checks["maintenance_margin"] = (maintenance_margin, 0.0, 0.5)
    for name, (value, low, high) in checks.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ParameterError(
                f"{name}: {value!r} is not allowed; expected a number from {low:g} to "
                f"{high:g} (a fraction: 0.001 is 0.1%)",
                param=name.split()[0],
                value=value,
            )
    rules = (
        {}
        if market is None
        else {
            "amount_step": market.amount_step,
            "price_step": market.price_step,
            "min_amount": market.min_amount,
            "min_cost": market.min_cost,
            "max_leverage": market.max_leverage,
            "market": market.symbol,
        }
    )
    return {
        "fee_maker": float(maker),
        "fee_taker": float(taker),
        "slippage": float(slippage),
        "init_cash": float(init_cash),
        "maintenance_margin": describe_maintenance(maintenance_margin),
        "risk_free": float(risk_free),
        **rules,
    }


def _cfg(settings: dict[str, Any], risk: Mapping[str, float | None], leverage: float, market: _Market) -> np.ndarray:
    """One run's settings vector (the engine's ``C_*`` slots, then the maintenance tiers)."""
    spec = settings["maintenance_margin"]
    tiers = maintenance_tiers(spec)
    if tiers is None and spec * leverage >= 1.0:  # the liquidation price would sit at (or beyond) the entry
        raise ParameterError(
            f"maintenance_margin: {spec:g} is not allowed with leverage {leverage:g}; expected a number from 0 "
            f"to below 1/leverage = {1.0 / leverage:g}",
            param="maintenance_margin",
            value=spec,
        )
    most = settings.get("max_leverage", np.inf)
    if leverage > most:
        raise ParameterError(
            f"leverage: {leverage:g} is above the {settings['market']} market's maximum of "
            f"{most:g}"
            + (" (a spot market; trade a perpetual such as 'BTC/USDT:USDT' with leverage)" if most <= 1 else ""),
            param="leverage",
            value=leverage,
        )
    if tiers is not None:
        reach = min(risk.get("max_position_size") or np.inf, settings["init_cash"] * leverage)
        tier_checks(tiers, leverage, reach, spec)
    cfg = np.zeros(e.CFG_SIZE + (0 if tiers is None else e.TIER_WIDTH * len(tiers)))
    cfg[e.C_INIT_CASH] = settings["init_cash"]
    cfg[e.C_FEE_TAKER] = settings["fee_taker"]
    cfg[e.C_FEE_MAKER] = settings["fee_maker"]
    cfg[e.C_SLIPPAGE] = settings["slippage"]
    cfg[e.C_LEVERAGE] = leverage
    cfg[e.C_MMR] = spec if tiers is None else tiers[0][1]
    cfg[e.C_ANN_FACTOR] = market.bars_per_year
    cfg[e.C_RISK_FREE] = (1.0 + settings.get("risk_free", 0.0)) ** (1.0 / market.bars_per_year) - 1.0
    cfg[e.C_YEARS] = market.span / _YEAR
    cfg[e.C_AMOUNT_STEP] = settings.get("amount_step", 0.0)
    cfg[e.C_PRICE_STEP] = settings.get("price_step", 0.0)
    cfg[e.C_MIN_AMOUNT] = settings.get("min_amount", 0.0)
    cfg[e.C_MIN_COST] = settings.get("min_cost", 0.0)
    cfg[e.C_MAX_POSITION] = risk.get("max_position_size") or np.inf
    cfg[e.C_MAX_DAILY_LOSS] = risk.get("max_daily_loss") or np.inf
    if tiers is not None:
        cfg[e.C_TIERS] = len(tiers)
        for i, (floor, rate, amount, _) in enumerate(tiers):
            k = e.CFG_SIZE + e.TIER_WIDTH * i
            cfg[k + e.T_FLOOR], cfg[k + e.T_RATE], cfg[k + e.T_AMOUNT] = floor, rate, amount
    return cfg


class _Market:
    """The candles as the contiguous float arrays the kernels read, plus the UTC day number."""

    def __init__(self, candles: pd.DataFrame, validate: bool = True, funding: Any = None):
        from workbench.data import bars_per_year, validate_candles

        self.candles = validate_candles(candles) if validate else candles
        index = self.candles.index
        self.arrays = {
            c: np.ascontiguousarray(self.candles[c].to_numpy(np.float64))
            for c in ("open", "high", "low", "close", "volume")
        }
        self.day = (index.as_unit("ns").asi8 // 86_400_000_000_000).astype(np.int64)
        self.bar = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta(hours=1)
        if len(index) > 2:
            self.bar = pd.Series(index).diff().min()
        # the calendar time the candles cover: from the first bar's open to the last bar's close
        self.span = pd.Timedelta(index[-1] - index[0]) + self.bar if len(index) else pd.Timedelta(0)
        # the bars a year of this market holds (its calendar's real bars: a closed weekend is none)
        self.bars_per_year = bars_per_year(self.candles) if len(index) > 1 else _YEAR / self.bar
        self.funding = funding_per_bar(index, self.bar, funding)  # the rate each bar's open settles


@dataclass(frozen=True, eq=False)
class KernelInputs:
    """Every argument a template kernel reads, by name: the bars' arrays shared by all runs,
    and one row per run of indicator rows, parameters and settings."""

    kernel: Any  # the template's Kernel class (its ``simulate`` is the compiled kernel)
    index: pd.DatetimeIndex  # the open time of each bar run
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day: np.ndarray  # UTC day number (the daily-loss limit)
    funding: np.ndarray  # the funding rate each bar's open settles
    indicators: np.ndarray  # (rows, bars): every run's indicators, then the mark's open, high, low
    rows: np.ndarray  # (runs, k) int64: run j's k-th indicator is indicators[rows[j, k]]
    params: np.ndarray  # (runs, p): each run's parameter vector
    cfgs: np.ndarray  # (runs, c): each run's settings vector (engine C_* slots, then tiers)

    @property
    def runs(self) -> int:
        return self.params.shape[0]

    @property
    def bars(self) -> int:
        return self.close.shape[0]


@dataclass(frozen=True, eq=False)
class KernelRun:
    """What one recorded run gives back."""

    metrics: dict[str, float]  # by name (METRIC_NAMES)
    fills: np.ndarray  # the fill record buffer: (bar, size, price, fee, kind) rows, metrics["fills"] used
    equity: np.ndarray  # equity at each bar's close
    position: np.ndarray  # signed units held at each bar's close
    intent: np.ndarray  # a live run's orders for its last bar (rows of I_LEG, I_TYPE, I_SIZE, I_PRICE)

    @property
    def recorded_fills(self) -> np.ndarray:
        return self.fills[: min(int(self.metrics["fills"]), self.fills.shape[0])]


def kernel_inputs(
    kernel: Any,
    market: _Market,
    combos: Sequence[Mapping[str, Any]],
    settings: dict[str, Any],
    limits: Mapping[str, float | None],
    *,
    mark: Any = None,
    start: int = 0,
) -> KernelInputs:
    """The kernel's inputs for ``combos`` (validated parameter sets) on ``market``'s candles.

    ``settings`` (from ``_settings``: fees, slippage, cash, maintenance margin, the market's
    rules) and ``limits`` (the risk limits) make each run's settings vector; the funding is the
    market's. ``mark``: a mark price to judge liquidations on (see ``backtest``). ``start``:
    run from this bar on; the bars before it only warm the indicators up (a live session).
    """
    keys: dict[IndicatorKey, int] = {}
    rows = _table([[keys.setdefault(k, len(keys)) for k in kernel.indicator_keys(c)] for c in combos], np.int64)
    indicators = stack(list(keys), market.arrays)
    params = _table([kernel.param_vector(c) for c in combos], np.float64)
    cfgs = _table([_cfg(settings, limits, kernel.leverage(c), market) for c in combos], np.float64)
    if mark is not None:
        if not getattr(kernel, "reads_mark", False):
            raise ParameterError(
                f"mark: the {kernel.name} template judges liquidations on the traded price only; run it without mark=",
                param="mark",
            )
        cfgs[:, e.C_MARK_ROW] = indicators.shape[0] + 1
        indicators = np.vstack([indicators, _mark_rows(mark, market)])
    a = market.arrays

    def bars(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values[..., start:]) if start else values

    return KernelInputs(
        kernel=kernel,
        index=market.candles.index[start:],
        open=bars(a["open"]),
        high=bars(a["high"]),
        low=bars(a["low"]),
        close=bars(a["close"]),
        day=bars(market.day),
        funding=bars(market.funding),
        indicators=np.ascontiguousarray(bars(indicators)),
        rows=rows,
        params=params,
        cfgs=cfgs,
    )


def _table(rows: list, dtype: type) -> np.ndarray:
    """Equal-length rows as one C-contiguous 2-D array (also with no rows, or empty ones)."""
    width = len(rows[0]) if rows else 0
    return np.ascontiguousarray(np.array(rows, dtype=dtype).reshape(len(rows), width))


def run_kernel(inputs: KernelInputs, run: int = 0, *, record: bool = True, live: bool = False) -> KernelRun:
    """Run ``inputs``' run ``run`` once; ``record``: keep its fills and curves; ``live``: have it
    write the orders of its last bar (a live session's forming bar)."""
    n = inputs.bars
    kernel = inputs.kernel
    fills = np.zeros((n * kernel.fills_per_bar + 1 if record else 0, 5))
    equity, position = np.zeros(n if record else 0), np.zeros(n if record else 0)
    out = np.zeros(e.N_METRICS)
    intent = np.full((e.INTENT_ROWS, e.INTENT_WIDTH), np.nan) if live else np.zeros((0, e.INTENT_WIDTH))
    kernel.simulate(
        inputs.open,
        inputs.high,
        inputs.low,
        inputs.close,
        inputs.day,
        inputs.funding,
        inputs.indicators,
        inputs.rows[run],
        inputs.params[run],
        inputs.cfgs[run],
        fills,
        equity,
        position,
        out,
        intent,
    )
    return KernelRun(
        metrics=dict(zip(e.METRIC_NAMES, out.tolist())),
        fills=fills,
        equity=equity,
        position=position,
        intent=intent[~np.isnan(intent[:, e.I_LEG])] if live else intent,
    )


def run_kernels(
    inputs: KernelInputs, out: np.ndarray, start: int = 0, stop: int | None = None, equity: np.ndarray | None = None
) -> None:
    """Run ``inputs``' runs ``start`` to ``stop`` in parallel, each writing its metrics into its
    row of ``out`` (columns: the ``M_*`` slots) and, given ``equity`` (runs x bars), its equity
    curve into its row of it; nothing else is recorded."""
    stop = inputs.runs if stop is None else stop
    args = (
        inputs.kernel.simulate,
        inputs.open,
        inputs.high,
        inputs.low,
        inputs.close,
        inputs.day,
        inputs.funding,
        inputs.indicators,
        inputs.rows[start:stop],
        inputs.params[start:stop],
        inputs.cfgs[start:stop],
        out[start:stop],
    )
    if equity is None:
        _run_many(*args)
    else:
        _record_many(*args, equity[start:stop])


@njit(cache=True, parallel=True)
def _run_many(simulate, open_, high, low, close, day, funding, ind, rows, params, cfgs, out):
    no_fills = np.zeros((0, 5))
    no_curve = np.zeros(0)
    no_intent = np.zeros((0, e.INTENT_WIDTH))
    for j in prange(params.shape[0]):
        simulate(
            open_,
            high,
            low,
            close,
            day,
            funding,
            ind,
            rows[j],
            params[j],
            cfgs[j],
            no_fills,
            no_curve,
            no_curve,
            out[j],
            no_intent,
        )


@njit(cache=True, parallel=True)
def _record_many(simulate, open_, high, low, close, day, funding, ind, rows, params, cfgs, out, equity):
    no_fills = np.zeros((0, 5))
    no_intent = np.zeros((0, e.INTENT_WIDTH))
    for j in prange(params.shape[0]):
        simulate(
            open_,
            high,
            low,
            close,
            day,
            funding,
            ind,
            rows[j],
            params[j],
            cfgs[j],
            no_fills,
            equity[j],
            np.empty(close.shape[0]),
            out[j],
            no_intent,
        )


def _mark_rows(mark: Any, market: _Market) -> np.ndarray:
    """The mark price's open, high and low at each candle, as three rows.

    A frame gives ``high`` and ``low`` (and ``open``; without one, the previous bar's mark
    ``close``, the first bar's clamped traded open); a series is one mark price per bar, the
    mark moving from the previous bar's value to this one's (its high and low are the two).
    """
    index = market.candles.index
    if isinstance(mark, pd.Series):
        frame = pd.DataFrame({"close": mark})
    elif isinstance(mark, pd.DataFrame):
        frame = mark
    else:
        raise ParameterError(
            f"mark: {type(mark).__name__} is not a mark price; give a DataFrame with high, low "
            "(open, close) or a Series of mark prices indexed by the candles' times",
            param="mark",
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ParameterError(
            f"mark: needs a DatetimeIndex of the candles' times, got {type(frame.index).__name__}", param="mark"
        )
    if frame.index.tz is None:
        frame = frame.tz_localize("UTC")
    wanted = ("high", "low") if isinstance(mark, pd.DataFrame) else ("close",)
    missing = [c for c in wanted if c not in frame.columns]
    if missing or (isinstance(mark, pd.DataFrame) and "open" not in frame and "close" not in frame):
        raise ParameterError(
            f"mark: the frame has no {(missing or ['open or close'])[0]!r} column; give high, low and close (or open)",
            param="mark",
        )
    aligned = frame.reindex(index)
    columns = [c for c in ("open", "high", "low", "close") if c in aligned]
    values = aligned[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values <= 0).any(axis=1)
    if bad.any():
        at = index[int(np.flatnonzero(bad)[0])]
        raise ParameterError(
            f"mark: no valid mark price at {at} (the mark must hold a positive price at every "
            f"candle: {len(index)} bars from {index[0]} to {index[-1]})",
            param="mark",
        )
    get = dict(zip(columns, values.T))
    if "open" in get:
        open_ = get["open"]
    else:
        open_ = np.empty(len(index))
        open_[1:] = get["close"][:-1]
        first = market.arrays["open"][0] if "high" in get else get["close"][0]
        open_[0] = min(max(first, get.get("low", get["close"])[0]), get.get("high", get["close"])[0])
    if "high" in get:
        high, low = get["high"], get["low"]
        if (high < low).any():
            at = index[int(np.flatnonzero(high < low)[0])]
            raise ParameterError(f"mark: its high is below its low at {at}", param="mark")
    else:
        high, low = np.maximum(open_, get["close"]), np.minimum(open_, get["close"])
    return np.ascontiguousarray(np.vstack([open_, np.maximum(high, open_), np.minimum(low, open_)]))
