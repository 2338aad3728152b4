"""A listing as the catalogue shows it: published metrics, chart, and (when you may clone it)
the parameters."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from workbench.errors import MarketError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Listing:
    """One published strategy. ``params`` and ``risk_limits`` are None when you cannot clone
    it (a paid listing you hold no entitlement to)."""

    id: int
    name: str
    description: str
    author: str
    template: str
    dataset: str
    dataset_info: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, float | None]
    equity_curve: dict[str, list]
    price: Decimal
    currency: str
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    params: dict[str, Any] | None
    risk_limits: dict[str, Any] | None

    @property
    def free(self) -> bool:
        return self.price == 0

    @property
    def cloneable(self) -> bool:
        """Whether the database lets you read what a clone copies."""
        return self.params is not None

    @property
    def strategy(self) -> dict[str, Any]:
        """The strategy JSON of the listed strategy (MarketError if you cannot clone it)."""
        self._require_params("its parameters")
        params, risk_limits = cast(dict[str, Any], self.params), cast(dict[str, Any], self.risk_limits)  # required
        return {"type": self.template, "params": dict(params), "risk_limits": dict(risk_limits)}

    @property
    def figure(self):
        """A bokeh figure of the published equity curve and its drawdown."""
        from workbench.market._chart import listing_figure

        return listing_figure(self)

    def stats(self) -> pd.DataFrame:
        """The published metrics labelled and formatted, one row each."""
        import pandas as pd

        from workbench.backtest._result import _METRIC_LABELS

        rows = {
            label: "n/a" if self.metrics.get(name) is None else fmt.format(self.metrics[name])
            for name, (label, fmt) in _METRIC_LABELS.items()
            if name in self.metrics
        }
        return pd.DataFrame({f"#{self.id} {self.name}": rows})

    def verify(self, candles: pd.DataFrame | None = None, *, tolerance: float = 1e-9) -> pd.DataFrame:
        """Backtest the listed strategy again on its data set and set the result beside the
        published metrics (``match`` per metric; MarketError when any differs). A bundled data
        set loads by name; other candles must be passed and must be the same data."""
        import pandas as pd

        from workbench.backtest import backtest
        from workbench.market._snapshot import backtest_options, candles_of, fingerprint, json_metrics

        self._require_params("the parameters to verify it")
        if candles is None:
            if not self.dataset_info.get("bundled"):
                raise MarketError(
                    f"listing #{self.id} was measured on {self.dataset!r}, which is not bundled; "
                    f"pass those candles to verify it"
                )
            candles = candles_of(self.dataset, None)[0]
        elif fingerprint(candles) != self.dataset_info.get("sha256"):
            raise MarketError(
                f"these candles are not the data set {self.dataset!r} of listing #{self.id} (their sha256 differs)"
            )
        again = json_metrics(
            backtest(
                self.template, candles, self.params, risk=self.risk_limits, **backtest_options(self.settings)
            ).metrics
        )
        table = pd.DataFrame(
            {"published": pd.Series(self.metrics, dtype=object), "recomputed": pd.Series(again, dtype=object)}
        )
        table["match"] = [_same(a, b, tolerance) for a, b in zip(table["published"], table["recomputed"])]
        if not table["match"].all():
            differing = ", ".join(table.index[~table["match"]])
            raise MarketError(
                f"listing #{self.id}: the published {differing} differ from a new backtest "
                f"on {self.dataset!r}:\n{table[~table['match']].to_string()}"
            )
        return table

    def _require_params(self, what: str) -> None:
        if self.params is None:
            state = "withdrawn" if self.status == "withdrawn" else f"costs {self.price} {self.currency}"
            raise MarketError(
                f"listing #{self.id} {self.name!r} {state}: you need an entitlement from its "
                f"author {self.author!r} (or the operator) for {what}"
            )

    def _repr_html_(self) -> str:
        """Every text field is another tenant's input: escaped."""
        price = "free" if self.free else f"{self.price} {self.currency}"
        head = f"#{self.id} {self.name}"
        detail = f"by {self.author}, {self.template}, {price}, v{self.version}, {self.status}"
        return (
            f"<h4>{html.escape(head)} <small>{html.escape(detail)}</small></h4>"
            f"<p>{html.escape(self.description)}</p><p>measured on {html.escape(self.dataset)}</p>"
            f"{self.stats().to_html()}"
        )

    def __str__(self) -> str:
        return f"#{self.id} {self.name} by {self.author} ({self.template}, v{self.version}, {self.status})"


def _same(a: float | None, b: float | None, tolerance: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
