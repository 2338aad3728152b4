"""The result of one backtest: metrics, curves, fills, trades, a chart and a vectorbt Portfolio."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from workbench.engine import core as e
from workbench.errors import WorkbenchError
from workbench.strategies import Template

_METRIC_LABELS = {
    "total_return": ("Total return", "{:.2%}"),
    "cagr": ("CAGR", "{:.2%}"),
    "sharpe": ("Sharpe ratio", "{:.2f}"),
    "sortino": ("Sortino ratio", "{:.2f}"),
    "calmar": ("Calmar ratio", "{:.2f}"),
    "max_drawdown": ("Max drawdown", "{:.2%}"),
    "win_rate": ("Win rate", "{:.2%}"),
    "profit_factor": ("Profit factor", "{:.2f}"),
    "expectancy": ("Expectancy (per trade)", "{:,.2f}"),
    "exposure": ("Exposure", "{:.2%}"),
    "trades": ("Closed trades", "{:.0f}"),
    "fees_paid": ("Fees paid", "{:,.2f}"),
    "liquidations": ("Liquidations", "{:.0f}"),
    "final_equity": ("Final equity", "{:,.2f}"),
    "fills": ("Fills", "{:.0f}"),
    "liquidation_loss": ("Margin lost to liquidations", "{:,.2f}"),
    "ruined": ("Ruined", "{:.0f}"),
    "funding_paid": ("Funding paid", "{:,.2f}"),
}


class BacktestResult:
    """What :func:`workbench.backtest` returns.

    Attributes:
        metrics: ``{name: value}``, each defined in ``docs/METRICS.md``: total_return, cagr
            (on calendar time), sharpe, sortino (over the ``risk_free`` rate), calmar,
            max_drawdown (fractions; ratios annualised over a 365-day year), win_rate, profit_factor,
            expectancy (quote currency per closed trade), exposure (share of bars in a
            position), trades (closed round trips, flat to flat), fees_paid (maker and taker fees only), liquidations,
            final_equity, fills, liquidation_loss (the margin liquidations took), ruined (1 when
            the account lost everything and stopped trading: see :attr:`ruined_at`).
        equity: equity at each bar's close (quote currency).
        position: signed position (base units) at each bar's close.
        funding: the funding each bar's open settled on the position held into it (quote
            currency; + paid, - received), 0 where none fell; its sum is ``funding_paid``.
        fills: every fill: time, size (+ buy, - sell), price, fee, kind.
        trades: round trips from flat to flat: entry/exit time and price, side, size, pnl.
    """

    def __init__(
        self,
        *,
        template: Template,
        params: dict[str, Any],
        risk: dict[str, float | None],
        settings: dict[str, float],
        candles: pd.DataFrame,
        metrics: dict[str, float],
        equity: np.ndarray,
        position: np.ndarray,
        fills: np.ndarray,
        leverage: float,
        funding_rates: np.ndarray | None = None,
    ):
        self.template = template
        self.params = params
        self.risk = risk
        self.settings = settings
        self.candles = candles
        self.metrics = metrics
        self.leverage = leverage
        index = candles.index
        self.equity = pd.Series(equity, index=index, name="equity")
        self.position = pd.Series(position, index=index, name="position")
        self.funding = pd.Series(
            _funding_paid(self.position.to_numpy(), candles["open"].to_numpy(), funding_rates, leverage),
            index=index,
            name="funding",
        )
        raw = fills[: min(int(metrics["fills"]), fills.shape[0])]
        self.fills = pd.DataFrame(
            {
                "time": index[raw[:, 0].astype(np.int64)],
                "size": raw[:, 1],
                "price": raw[:, 2],
                "fee": raw[:, 3],
                "kind": pd.Categorical.from_codes(raw[:, 4].astype(np.int64), categories=list(e.FILL_KINDS)),
            }
        )
        self._fill_bars = raw[:, 0].astype(np.int64)

    @property
    def ruined_at(self) -> pd.Timestamp | None:
        """The bar whose fill (a liquidation, a stop...) left the account with nothing; no
        trade follows it and the equity stays at its last value. None when it never happened."""
        return self.fills["time"].iloc[-1] if self.metrics["ruined"] else None

    @property
    def strategy(self) -> dict[str, Any]:
        """The strategy JSON (type, params, risk_limits) of what was backtested, ready to save as a strategy."""
        return {"type": self.template.name, "params": dict(self.params), "risk_limits": dict(self.risk)}

    @cached_property
    def trades(self) -> pd.DataFrame:
        opened: Any  # the fill that opened the trade (a row of the fills frame)
        rows, position, opened, entry_cost, fees = [], 0.0, None, 0.0, 0.0
        for fill in self.fills.itertuples(index=False):
            size = fill.size
            # a reversal crosses zero: split it into the closing part and the opening part
            parts = (
                [size]
                if position == 0 or np.sign(position + size) == np.sign(position) or position + size == 0
                else [-position, size + position]
            )
            for part in parts:
                fee = fill.fee * abs(part) / abs(size)
                if position == 0:
                    opened, entry_cost, fees, peak = fill, 0.0, 0.0, 0.0
                position += part
                entry_cost += part * fill.price
                fees += fee
                peak = max(peak, abs(position))
                if abs(position) <= 1e-12 * abs(part):
                    rows.append(
                        {
                            "entry_time": opened.time,
                            "exit_time": fill.time,
                            "side": "long" if opened.size > 0 else "short",
                            "size": peak,
                            "entry_price": opened.price,
                            "exit_price": fill.price,
                            "pnl": -entry_cost - fees,
                            "fees": fees,
                            "exit_kind": fill.kind,
                        }
                    )
                    position = 0.0
        columns = ["entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "fees", "exit_kind"]
        return pd.DataFrame(rows, columns=columns)

    @cached_property
    def drawdown(self) -> pd.Series:
        peak = np.maximum.accumulate(np.maximum(self.equity.to_numpy(), self.settings["init_cash"]))
        return pd.Series(self.equity.to_numpy() / peak - 1.0, index=self.equity.index, name="drawdown")

    @cached_property
    def portfolio(self):
        """The fills replayed through ``vectorbt.Portfolio`` for its analytics and plots.

        vectorbt's open-source Portfolio has no margin and no cash flow besides orders, so
        only unleveraged runs that paid no funding can be replayed; their value matches
        :attr:`equity` (tests hold it to 1e-9).
        """
        if self.leverage != 1:
            raise WorkbenchError(
                f"this run uses leverage {self.leverage:g}: vectorbt's open-source Portfolio cannot "
                "borrow for longs, so leveraged runs are simulated by the workbench's margin engine "
                "only; use .equity, .trades and .metrics (or backtest with leverage=1 for a Portfolio)"
            )
        if self.metrics["funding_paid"]:
            raise WorkbenchError(
                f"this run's short positions settled {self.metrics['funding_paid']:,.2f} of funding: vectorbt's "
                "open-source Portfolio has no cash flow besides orders, so it cannot replay it; use .equity, "
                ".trades and .metrics (or backtest with funding=None for a Portfolio)"
            )
        from workbench.backtest._replay import replay

        return replay(self)

    @cached_property
    def figure(self):
        """A bokeh figure: price with fills, equity, drawdown, on one linked time axis."""
        from workbench.backtest._chart import result_figure

        return result_figure(self)

    def stats(self) -> pd.DataFrame:
        """The metrics labelled and formatted, one row each (a table in notebooks)."""
        rows = {}
        for name, (label, fmt) in _METRIC_LABELS.items():
            value = self.metrics[name]
            rows[label] = "n/a" if value != value else fmt.format(value)
        return pd.DataFrame({self.template.name: rows})

    def __repr__(self) -> str:
        m = self.metrics
        ruin = f" ruined_at={self.ruined_at}" if m["ruined"] else ""
        return (
            f"<BacktestResult {self.template.name} {self.params} total_return={m['total_return']:.4f} "
            f"sharpe={m['sharpe']:.3f} max_drawdown={m['max_drawdown']:.4f} trades={int(m['trades'])}{ruin}>"
        )

    def _repr_html_(self) -> str:
        return self.stats().to_html()


def _funding_paid(position: np.ndarray, opens: np.ndarray, rates: np.ndarray | None, leverage: float) -> np.ndarray:
    """What each bar's open settled, as the engine's ``pay_funding`` does: the position held
    into the bar (the previous close's) times the open price times the bar's rate; an
    unleveraged long is spot and pays nothing."""
    if rates is None:
        return np.zeros(len(position))
    held = np.concatenate([[0.0], position[:-1]])
    paid = held * opens * rates
    if leverage <= 1.0:
        paid[held > 0] = 0.0
    return paid + 0.0  # no negative zeros
