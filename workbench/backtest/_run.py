"""``backtest`` and ``sweep``: validate, build the indicators, call the template kernel."""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from workbench.backtest import _engine as e
from workbench.backtest._funding import DEFAULT_FUNDING, describe, funding_per_bar
from workbench.backtest._result import BacktestResult
from workbench.backtest._venues import MarketRules, market_rules, venue_fees
from workbench.errors import ParameterError
from workbench.strategies import Template, get_template, kernel_for
from workbench.strategies._indicators import IndicatorKey, stack

# Idle OpenMP threads must sleep, not spin: a spinning thread steals the core that a sweep's
# other thread (and, on a hub, another tenant's kernel) needs. Set before numba first loads its
# OpenMP layer (at the first parallel run); explicit settings win.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "0")

_YEAR = pd.Timedelta(days=365)  # crypto trades every day; vectorbt's default year too


def _settings(fees: float | str | Mapping[str, float], slippage: float, init_cash: float,
              maintenance_margin: float, risk_free: float = 0.0, market: MarketRules | None = None) -> dict[str, Any]:
    if isinstance(fees, str):
        fees = venue_fees(fees, market)
    if isinstance(fees, Mapping):
        unknown = set(fees) - {"maker", "taker"}
        if unknown:
            raise ParameterError(f"fees: unknown key {sorted(unknown)[0]!r}; use 'maker' and 'taker'",
                                 param="fees", value=fees)
        missing = [side for side in ("maker", "taker") if side not in fees]
        if missing:  # a rate left out is not free: say so rather than trade it at 0
            raise ParameterError(f"fees: {dict(fees)!r} has no {missing[0]!r} rate; give both 'maker' and "
                                 "'taker', or one number for both", param="fees", value=fees)
        maker, taker = fees["maker"], fees["taker"]
    else:
        maker = taker = fees
    # a maker rate may be a rebate (Gate's perpetual VIP tiers pay makers)
    checks = {"fees (maker)": (maker, -0.01, 0.1), "fees (taker)": (taker, 0.0, 0.1),
              "slippage": (slippage, 0.0, 0.1), "maintenance_margin": (maintenance_margin, 0.0, 0.5),
              "init_cash": (init_cash, 1e-9, 1e15), "risk_free": (risk_free, -0.5, 1.0)}
    for name, (value, low, high) in checks.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ParameterError(f"{name}: {value!r} is not allowed; expected a number from {low:g} to "
                                 f"{high:g} (a fraction: 0.001 is 0.1%)", param=name.split()[0], value=value)
    rules = {} if market is None else {"amount_step": market.amount_step, "price_step": market.price_step,
                                       "min_amount": market.min_amount, "min_cost": market.min_cost,
                                       "max_leverage": market.max_leverage, "market": market.symbol}
    return {"fee_maker": float(maker), "fee_taker": float(taker), "slippage": float(slippage),
            "init_cash": float(init_cash), "maintenance_margin": float(maintenance_margin),
            "risk_free": float(risk_free), **rules}


def _cfg(settings: dict[str, Any], risk: Mapping[str, float | None], leverage: float,
         market: _Market) -> np.ndarray:
    mmr = settings["maintenance_margin"]
    if mmr * leverage >= 1.0:  # the liquidation price would sit at (or beyond) the entry
        raise ParameterError(
            f"maintenance_margin: {mmr:g} is not allowed with leverage {leverage:g}; expected a number from 0 "
            f"to below 1/leverage = {1.0 / leverage:g}", param="maintenance_margin", value=mmr)
    most = settings.get("max_leverage", np.inf)
    if leverage > most:
        raise ParameterError(f"leverage: {leverage:g} is above the {settings['market']} market's maximum of "
                             f"{most:g}" + (" (a spot market; trade a perpetual such as 'BTC/USDT:USDT' with "
                                            "leverage)" if most <= 1 else ""), param="leverage", value=leverage)
    cfg = np.zeros(e.CFG_SIZE)
    cfg[e.C_INIT_CASH] = settings["init_cash"]
    cfg[e.C_FEE_TAKER] = settings["fee_taker"]
    cfg[e.C_FEE_MAKER] = settings["fee_maker"]
    cfg[e.C_SLIPPAGE] = settings["slippage"]
    cfg[e.C_LEVERAGE] = leverage
    cfg[e.C_MMR] = settings["maintenance_margin"]
    cfg[e.C_ANN_FACTOR] = market.bars_per_year
    cfg[e.C_RISK_FREE] = (1.0 + settings.get("risk_free", 0.0)) ** (1.0 / market.bars_per_year) - 1.0
    cfg[e.C_YEARS] = market.span / _YEAR
    cfg[e.C_AMOUNT_STEP] = settings.get("amount_step", 0.0)
    cfg[e.C_PRICE_STEP] = settings.get("price_step", 0.0)
    cfg[e.C_MIN_AMOUNT] = settings.get("min_amount", 0.0)
    cfg[e.C_MIN_COST] = settings.get("min_cost", 0.0)
    cfg[e.C_MAX_POSITION] = risk.get("max_position_size") or np.inf
    cfg[e.C_MAX_DAILY_LOSS] = risk.get("max_daily_loss") or np.inf
    return cfg


class _Market:
    """The candles as the contiguous float arrays the kernels read, plus the UTC day number."""

    def __init__(self, candles: pd.DataFrame, validate: bool = True, funding: Any = None):
        from workbench.data import bars_per_year, validate_candles

        self.candles = validate_candles(candles) if validate else candles
        index = self.candles.index
        self.arrays = {c: np.ascontiguousarray(self.candles[c].to_numpy(np.float64))
                       for c in ("open", "high", "low", "close", "volume")}
        self.day = (index.as_unit("ns").asi8 // 86_400_000_000_000).astype(np.int64)
        self.bar = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta(hours=1)
        if len(index) > 2:
            self.bar = pd.Series(index).diff().min()
        # the calendar time the candles cover: from the first bar's open to the last bar's close
        self.span = pd.Timedelta(index[-1] - index[0]) + self.bar if len(index) else pd.Timedelta(0)
        # the bars a year of this market holds (its calendar's real bars: a closed weekend is none)
        self.bars_per_year = bars_per_year(self.candles) if len(index) > 1 else _YEAR / self.bar
        self.funding = funding_per_bar(index, self.bar, funding)  # the rate each bar's open settles

    def run(self, kernel, ind, rows, params, cfg, fills, equity_out, position_out, out) -> None:
        a = self.arrays
        kernel.simulate(a["open"], a["high"], a["low"], a["close"], self.day, self.funding, ind, rows, params, cfg,
                        fills, equity_out, position_out, out, np.zeros((0, e.INTENT_WIDTH)))


def _resolve(template: str | Template) -> Template:
    return template if isinstance(template, Template) else get_template(template)


def backtest(template: str | Template, candles: pd.DataFrame, params: Mapping[str, Any] | None = None, *,
             risk: Mapping[str, float | None] | None = None, fees: float | str | Mapping[str, float] = 0.001,
             slippage: float = 0.0005, init_cash: float = 10_000.0, maintenance_margin: float = 0.005,
             risk_free: float = 0.0, market: Any = None, funding: Any = DEFAULT_FUNDING) -> BacktestResult:
    """Backtest one parameter set of a template on candles.

    Args:
        template: a template name (``"channel"``, ``"ema_reversal"``, ``"market_making"``)
            or a :class:`Template`.
        candles: a tidy candle frame (:func:`workbench.load_candles`, :func:`workbench.read_candles`).
        params: parameters; missing ones take the template's defaults.
        risk: risk limits ``max_position_size`` (notional) and ``max_daily_loss`` in the quote
            currency; missing ones take the template's defaults, ``None`` switches one off.
        fees: fee rate of the traded notional (0.001 = 0.1%), ``{"maker": .., "taker": ..}``,
            or a venue's schedule: ``"binance"``, ``"gate swap"``, ``"binance swap vip2"``
            (ccxt's fee tables; the market type defaults to ``market``'s, else spot).
        slippage: adverse price move of market orders, as a fraction of the price.
        init_cash: starting balance in the quote currency.
        maintenance_margin: the maintenance margin rate of leveraged positions.
        risk_free: the annual risk-free rate Sharpe and Sortino measure excess returns over
            (0.04 is 4 % a year), compounded down to one bar.
        market: trade within a market's rules: ``"binance BTC/USDT:USDT"`` (a bundled
            snapshot) or an exchange's ``Market``. Amounts round down to its amount step,
            orders that open below its minimum amount or cost are not placed, limit and stop
            prices sit on its tick, and a leverage above its maximum is refused. Default:
            no rounding and no minimum.
        funding: what perpetual positions (shorts, and longs with leverage) pay or receive:
            a rate per 8 hours settled at 00:00, 08:00 and 16:00 UTC (default 0.0001, the
            venues' rate at a neutral premium), a ``pd.Series`` of real rates indexed by
            settlement time, or ``None`` for none. Shown as ``metrics["funding_paid"]``.

    Returns:
        A :class:`BacktestResult`: ``.metrics`` (defined in ``docs/METRICS.md``), ``.equity``,
        ``.trades``, ``.fills``, ``.figure`` (bokeh) and ``.portfolio`` (the same fills
        replayed by vectorbt).

    Raises:
        ParameterError: a parameter, limit or setting outside its range (named in the message).
        CandleError: candles that would give a wrong backtest.

    Example:
        >>> import workbench as wb
        >>> result = wb.backtest("channel", wb.load_candles(), {"entry_window": 48})
        >>> round(result.metrics["total_return"], 4)  # doctest: +SKIP
    """
    tpl = _resolve(template)
    params = tpl.validate(params)
    limits = tpl.validate_risk(risk)
    settings = _settings(fees, slippage, init_cash, maintenance_margin, risk_free, market_rules(market))
    settings["funding"] = describe(funding)
    market = _Market(candles, funding=funding)
    kernel = kernel_for(tpl.name)
    cfg = _cfg(settings, limits, kernel.leverage(params), market)
    keys = kernel.indicator_keys(params)
    ind = stack(keys, market.arrays)
    n = len(market.candles)
    fills = np.zeros((n * kernel.fills_per_bar + 1, 5))
    equity_out, position_out, out = np.zeros(n), np.zeros(n), np.zeros(e.N_METRICS)
    market.run(kernel, ind, np.arange(len(keys)), kernel.param_vector(params), cfg, fills,
               equity_out, position_out, out)
    result = BacktestResult(template=tpl, params=params, risk=limits, settings=settings,
                            candles=market.candles, metrics=dict(zip(e.METRIC_NAMES, out.tolist())),
                            equity=equity_out, position=position_out, fills=fills, leverage=cfg[e.C_LEVERAGE])
    if result.ruined_at is not None:
        last = result.fills.iloc[-1]
        warnings.warn(f"{tpl.name}: the account was ruined at {last['time']} by a {last['kind']} fill (equity "
                      f"{result.metrics['final_equity']:,.2f}); nothing is traded after it", RuntimeWarning,
                      stacklevel=2)
    return result


@njit(cache=True, parallel=True)
def _run_many(simulate, open_, high, low, close, day, funding, ind, rows, params, cfgs, out):
    no_fills = np.zeros((0, 5))
    no_curve = np.zeros(0)
    no_intent = np.zeros((0, e.INTENT_WIDTH))
    for j in prange(params.shape[0]):
        simulate(open_, high, low, close, day, funding, ind, rows[j], params[j], cfgs[j], no_fills, no_curve,
                 no_curve, out[j], no_intent)


def _combinations(tpl: Template, grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's axes (scalars are fixed values), validated."""
    axes = {}
    for name, values in grid.items():
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable) or (
                name in tpl.params and tpl.params[name].kind == "float_list"
                and not any(isinstance(v, (list, tuple)) for v in values)):
            values = [values]
        axes[name] = list(values)
        if not axes[name]:
            raise ParameterError(f"grid axis {name!r} has no values", param=name, value=values)
    names = list(axes)
    return [tpl.validate(dict(zip(names, combo))) for combo in itertools.product(*axes.values())]


def sweep(template: str | Template, candles: pd.DataFrame, grid: Mapping[str, Any], *,
          risk: Mapping[str, float | None] | None = None, fees: float | str | Mapping[str, float] = 0.001,
          slippage: float = 0.0005, init_cash: float = 10_000.0, maintenance_margin: float = 0.005,
          risk_free: float = 0.0, market: Any = None, funding: Any = DEFAULT_FUNDING,
          sort_by: str = "sharpe", progress: bool = True,
          chunk_size: int | None = None) -> pd.DataFrame:
    """Backtest every combination of a parameter grid; a ranked table of metrics.

    Each row equals what :func:`backtest` gives for that combination: both run the same
    compiled kernel. Combinations run in parallel on every core, in chunks; the progress
    bar (tqdm: a widget in notebooks, text in a terminal) advances per chunk, and an
    interrupt (Ctrl-C, or the notebook's stop button) keeps the rows already done.

    Args:
        grid: ``{parameter: values}``; a scalar (or, for a ladder, one list) fixes a value.
            Parameters not in the grid take the template's defaults.
        sort_by: the metric to rank by (descending; ascending for ``max_drawdown``).
        Other arguments: as :func:`backtest`.

    Example:
        >>> table = wb.sweep("channel", candles, {"entry_window": range(10, 200, 10),
        ...                                       "exit_window": [12, 24, 48]})  # doctest: +SKIP
        >>> table.head()  # best first  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    tpl = _resolve(template)
    if sort_by not in e.METRIC_NAMES:
        raise ParameterError(f"sort_by: {sort_by!r} is not a metric; choose one of {', '.join(e.METRIC_NAMES)}",
                             param="sort_by", value=sort_by)
    combos = _combinations(tpl, grid)
    limits = tpl.validate_risk(risk)
    settings = _settings(fees, slippage, init_cash, maintenance_margin, risk_free, market_rules(market))
    market = _Market(candles, funding=funding)
    kernel = kernel_for(tpl.name)
    keys: dict[IndicatorKey, int] = {}
    rows = np.array([[keys.setdefault(k, len(keys)) for k in kernel.indicator_keys(c)] for c in combos],
                    dtype=np.int64)
    ind = stack(list(keys), market.arrays)
    params = np.array([kernel.param_vector(c) for c in combos])
    cfgs = np.array([_cfg(settings, limits, kernel.leverage(c), market) for c in combos])
    out = np.full((len(combos), e.N_METRICS), np.nan)
    size = chunk_size or max(1, min(len(combos), 2_000_000 // max(len(market.candles), 1) * 8))
    done = 0
    a = market.arrays
    bar = tqdm(total=len(combos), desc=f"sweep {tpl.name}", unit="run", disable=not progress)
    try:
        for start in range(0, len(combos), size):
            stop = min(start + size, len(combos))
            _run_many(kernel.simulate, a["open"], a["high"], a["low"], a["close"], market.day, market.funding, ind,
                      rows[start:stop], params[start:stop], cfgs[start:stop], out[start:stop])
            done = stop
            bar.update(stop - start)
    except KeyboardInterrupt:
        warnings.warn(f"sweep interrupted: returning the {done} of {len(combos)} combinations done",
                      stacklevel=2)
    finally:
        bar.close()
    table = pd.DataFrame({name: [tpl.axis(c, name) for c in combos[:done]] for name in grid})
    metrics = pd.DataFrame(out[:done], columns=list(e.METRIC_NAMES))
    table = pd.concat([table, metrics], axis=1)
    table["trades"] = table["trades"].astype(int)
    table["ruined"] = table["ruined"].astype(bool)
    ascending = sort_by == "max_drawdown"
    table = table.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    table.attrs.update(template=tpl.name, combinations=len(combos), completed=done,
                       interrupted=done < len(combos), bars=len(market.candles))
    return table

