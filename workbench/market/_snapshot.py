"""What a listing freezes at publication: the strategy, the named data set, the backtest's
settings, its metrics and its equity curve (thinned to what a chart needs).

The metrics are measured here, in the publishing process, with :func:`workbench.backtest`;
anyone who can read the parameters (the author, a cloner, the operator) reproduces them
(``Listing.verify``) on the same data set, which the listing identifies by name and fingerprint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import MarketError

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_DATASET = "btcusd_1h"


@dataclass(frozen=True)
class Snapshot:
    """The columns of a listing that a publication (or an update of its strategy) sets."""

    template: str
    params: dict[str, Any]
    risk_limits: dict[str, Any]
    dataset: str
    dataset_info: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, Any]
    equity_curve: dict[str, list]


def resolve_strategy(strategy: Any) -> tuple[str | None, str, dict[str, Any], dict[str, Any]]:
    """(its name if saved, template, params, risk limits), validated, from a saved strategy of
    the caller (name, id or :class:`SavedStrategy`) or a strategy JSON
    ``{"type": ..., "params": ..., "risk_limits": ...}``."""
    from workbench.strategies import SavedStrategy, get_template, load_strategy

    if isinstance(strategy, (str, int)) and not isinstance(strategy, bool):
        strategy = load_strategy(strategy)
    name = strategy.name if isinstance(strategy, SavedStrategy) else None
    if isinstance(strategy, SavedStrategy):
        strategy = strategy.strategy
    if not isinstance(strategy, Mapping) or "type" not in strategy:
        raise MarketError(
            f"publish a saved strategy (its name or id) or a strategy JSON "
            f"{{'type': ..., 'params': ..., 'risk_limits': ...}}, not {strategy!r:.80}"
        )
    template = get_template(strategy["type"])
    return (
        name,
        template.name,
        template.validate(strategy.get("params")),
        template.validate_risk(strategy.get("risk_limits")),
    )


def candles_of(dataset: str | pd.DataFrame, name: str | None) -> tuple[pd.DataFrame, str, bool]:
    """(candles, data set name, bundled?) for a bundled data set's name or a candle frame,
    which must then be named."""
    import pandas as pd

    from workbench.data import load_candles, validate_candles

    if isinstance(dataset, str):
        if name not in (None, dataset):
            raise MarketError(
                f"dataset_name={name!r} renames the bundled data set {dataset!r}; "
                f"leave it out (it names candle frames only)"
            )
        return load_candles(dataset), dataset, True
    if not isinstance(dataset, pd.DataFrame):
        raise MarketError(
            f"dataset: expected a bundled data set's name (e.g. {DEFAULT_DATASET!r}) or a "
            f"candle DataFrame, not {type(dataset).__name__}"
        )
    if not isinstance(name, str) or not name.strip():
        raise MarketError(
            "a candle DataFrame needs dataset_name='...' so buyers know what the metrics were measured on"
        )
    return validate_candles(dataset), name.strip(), False


def fingerprint(candles: pd.DataFrame) -> str:
    """sha256 of the candles' times and OHLCV values: the same data set gives the same digest."""
    import numpy as np

    digest = hashlib.sha256(candles.index.as_unit("ns").asi8.tobytes())
    digest.update(
        np.ascontiguousarray(candles[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)).tobytes()
    )
    return digest.hexdigest()


def backtest_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`workbench.backtest` keywords that reproduce ``result.settings``."""
    from workbench.backtest import MarketRules
    from workbench.backtest._funding import from_description

    options = {
        "fees": {"maker": settings["fee_maker"], "taker": settings["fee_taker"]},
        "slippage": settings["slippage"],
        "init_cash": settings["init_cash"],
        "maintenance_margin": settings["maintenance_margin"],
        "risk_free": settings.get("risk_free", 0.0),
        "funding": from_description(settings.get("funding")),
    }  # none in listings made before funding
    if "market" in settings:
        options["market"] = MarketRules(
            settings["market"],
            settings["amount_step"],
            settings["price_step"],
            settings["min_amount"],
            settings["min_cost"],
            settings["max_leverage"],
        )
    return options


def json_metrics(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """JSON has no NaN or infinity: a metric that does not exist (no trades...) is None."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


def take(
    template: str,
    params: dict[str, Any],
    risk: dict[str, Any],
    dataset: str | pd.DataFrame,
    dataset_name: str | None,
    options: Mapping[str, Any],
) -> Snapshot:
    """Backtest the strategy on the data set and freeze what the listing shows."""
    from workbench.backtest import backtest
    from workbench.backtest._chart import _thin

    candles, name, bundled = candles_of(dataset, dataset_name)
    result = backtest(template, candles, params, risk=risk, **options)
    index = candles.index
    info = {
        "bundled": bundled,
        "symbol": candles.attrs.get("symbol"),
        "timeframe": candles.attrs.get("timeframe"),
        "source": candles.attrs.get("source"),
        "start": index[0].isoformat(),
        "end": index[-1].isoformat(),
        "bars": len(index),
        "sha256": fingerprint(candles),
    }
    curve = _thin(result.equity)
    return Snapshot(
        template=template,
        params=params,
        risk_limits=risk,
        dataset=name,
        dataset_info=info,
        settings=dict(result.settings),
        metrics=json_metrics(result.metrics),
        equity_curve={
            "time": (curve.index.as_unit("s").asi8).tolist(),
            "equity": [round(v, 6) for v in curve.tolist()],
        },
    )
