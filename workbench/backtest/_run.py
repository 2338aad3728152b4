"""``backtest`` and ``sweep``: validate, build the indicators, call the template kernel."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest._funding import DEFAULT_FUNDING, describe

# the kernel protocol; _cfg, _Market and _settings stay importable from here (workbench.research)
from workbench.backtest._kernel import _cfg, _Market, _settings, kernel_inputs, run_kernel, run_kernels  # noqa: F401
from workbench.backtest._result import BacktestResult
from workbench.backtest._venues import market_rules
from workbench.engine import core as e
from workbench.errors import ParameterError
from workbench.strategies import Template, get_template, kernel_for


def _resolve(template: str | Template) -> Template:
    return template if isinstance(template, Template) else get_template(template)


def backtest(
    template: str | Template,
    candles: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    risk: Mapping[str, float | None] | None = None,
    fees: float | str | Mapping[str, float] = 0.001,
    slippage: float = 0.0005,
    init_cash: float = 10_000.0,
    maintenance_margin: Any = 0.005,
    risk_free: float = 0.0,
    market: Any = None,
    funding: Any = DEFAULT_FUNDING,
    mark: Any = None,
) -> BacktestResult:
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
        maintenance_margin: the maintenance margin of perpetual positions: one rate (0.005,
            liquidating at the approximation ``entry*(1 - 1/L + rate)`` for longs), or the
            venue's tiers, liquidating where the venue does (``docs/METRICS.md``): ``"binance"``
            or ``"gate"`` (their BTC/USDT perpetual's, bundled), or rows ``(notional_floor,
            rate[, amount[, max_leverage]])`` or ccxt's ``fetch_leverage_tiers`` entries. The
            tier is the one holding the position's notional; a leverage above the maximum of a
            tier the run's positions can reach (init cash x leverage) is refused.
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
        mark: the mark price liquidations are judged on (a frame with ``high``, ``low`` and
            ``close`` or ``open``, or a series of mark prices, at the candles' times); stops and
            limits still fill on the traded price. Without it the traded price stands in for
            the mark (an approximation: venues liquidate on the mark).

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
    inputs = kernel_inputs(kernel_for(tpl.name), market, [params], settings, limits, mark=mark)
    run = run_kernel(inputs)
    result = BacktestResult(
        template=tpl,
        params=params,
        risk=limits,
        settings=settings,
        candles=market.candles,
        metrics=run.metrics,
        equity=run.equity,
        position=run.position,
        fills=run.fills,
        leverage=inputs.cfgs[0, e.C_LEVERAGE],
        funding_rates=inputs.funding,
    )
    if result.ruined_at is not None:
        last = result.fills.iloc[-1]
        warnings.warn(
            f"{tpl.name}: the account was ruined at {last['time']} by a {last['kind']} fill (equity "
            f"{result.metrics['final_equity']:,.2f}); nothing is traded after it",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _combinations(tpl: Template, grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's axes (scalars are fixed values), validated."""
    axes = {}
    for name, values in grid.items():
        if (
            isinstance(values, (str, bytes, Mapping))
            or not isinstance(values, Iterable)
            or (
                name in tpl.params
                and tpl.params[name].kind == "float_list"
                and not any(isinstance(v, (list, tuple)) for v in values)
            )
        ):
            values = [values]
        axes[name] = list(values)
        if not axes[name]:
            raise ParameterError(f"grid axis {name!r} has no values", param=name, value=values)
    names = list(axes)
    return [tpl.validate(dict(zip(names, combo))) for combo in itertools.product(*axes.values())]


def sweep(
    template: str | Template,
    candles: pd.DataFrame,
    grid: Mapping[str, Any],
    *,
    risk: Mapping[str, float | None] | None = None,
    fees: float | str | Mapping[str, float] = 0.001,
    slippage: float = 0.0005,
    init_cash: float = 10_000.0,
    maintenance_margin: Any = 0.005,
    risk_free: float = 0.0,
    market: Any = None,
    funding: Any = DEFAULT_FUNDING,
    mark: Any = None,
    sort_by: str = "sharpe",
    progress: bool = True,
    chunk_size: int | None = None,
) -> pd.DataFrame:
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
        raise ParameterError(
            f"sort_by: {sort_by!r} is not a metric; choose one of {', '.join(e.METRIC_NAMES)}",
            param="sort_by",
            value=sort_by,
        )
    combos = _combinations(tpl, grid)
    limits = tpl.validate_risk(risk)
    settings = _settings(fees, slippage, init_cash, maintenance_margin, risk_free, market_rules(market))
    market = _Market(candles, funding=funding)
    inputs = kernel_inputs(kernel_for(tpl.name), market, combos, settings, limits, mark=mark)
    out = np.full((len(combos), e.N_METRICS), np.nan)
    size = chunk_size or max(1, min(len(combos), 2_000_000 // max(len(market.candles), 1) * 8))
    done = 0
    bar = tqdm(total=len(combos), desc=f"sweep {tpl.name}", unit="run", disable=not progress)
    try:
        for start in range(0, len(combos), size):
            stop = min(start + size, len(combos))
            run_kernels(inputs, out, start, stop)
            done = stop
            bar.update(stop - start)
    except KeyboardInterrupt:
        warnings.warn(f"sweep interrupted: returning the {done} of {len(combos)} combinations done", stacklevel=2)
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
    table.attrs.update(
        template=tpl.name,
        combinations=len(combos),
        completed=done,
        interrupted=done < len(combos),
        bars=len(market.candles),
    )
    return table
