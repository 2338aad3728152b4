"""Saved strategies: a template + one parameter set + risk limits, owned by one tenant.

Saving under a name that exists adds a new *version* (the old rows stay, so a strategy that
ran live keeps exactly what it ran). The rows live in PostgreSQL and are read and written
through the tenant's own database role, so row-level security decides what a tenant sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from workbench.errors import StrategyError
from workbench.strategies import Template, get_template

if TYPE_CHECKING:
    import pandas as pd

    from workbench.backtest import BacktestResult

_LIVE = ("running", "paused")


@dataclass(frozen=True)
class SavedStrategy:
    """One saved version of a strategy."""

    id: int
    name: str
    version: int
    template: str
    params: dict[str, Any]
    risk_limits: dict[str, Any]
    is_locked: bool
    parent_id: int | None
    created_at: datetime
    listing_id: int | None = None  # the marketplace listing it was cloned from

    @property
    def strategy(self) -> dict[str, Any]:
        """The strategy JSON (type, params, risk_limits)."""
        return {"type": self.template, "params": dict(self.params), "risk_limits": dict(self.risk_limits)}

    def backtest(self, candles: pd.DataFrame, **options: Any) -> BacktestResult:
        """Backtest this strategy's parameters and risk limits on ``candles``."""
        from workbench.backtest import backtest

        return backtest(self.template, candles, self.params, risk=self.risk_limits, **options)

    def __str__(self) -> str:
        return f"{self.name} v{self.version} (#{self.id}, {self.template})"


def _row(row) -> SavedStrategy:
    return SavedStrategy(
        id=row.id,
        name=row.name,
        version=row.version,
        template=row.template,
        params=dict(row.params),
        risk_limits=dict(row.risk_limits),
        is_locked=row.is_locked,
        parent_id=row.parent_id,
        created_at=row.created_at,
        listing_id=row.listing_id,
    )


def _find(scope, strategy: str | int, version: int | None = None):
    from sqlalchemy import select

    from workbench.store import Strategy

    query = select(Strategy)
    if isinstance(strategy, int) and not isinstance(strategy, bool):
        query = query.where(Strategy.id == strategy)
    else:
        query = query.where(Strategy.name == strategy)
        if version is not None:
            query = query.where(Strategy.version == version)
    row = scope.scalars(query.order_by(Strategy.version.desc()).limit(1)).first()
    if row is None:
        what = f"#{strategy}" if isinstance(strategy, int) else repr(strategy)
        raise StrategyError(
            f"no saved strategy {what}{f' version {version}' if version else ''}; list_strategies() shows yours"
        )
    return row


def save_strategy(
    name: str,
    template: str | Template | Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    risk_limits: Mapping[str, Any] | None = None,
) -> SavedStrategy:
    """Save a parameter set as a strategy; an existing name gets a new version.

    ``template`` is a template name, a :class:`Template`, or a whole strategy JSON
    (``{"type": ..., "params": ..., "risk_limits": ...}``, e.g. ``result.strategy``).
    Parameters are validated against the template's schema first.

    Example:
        >>> wb.save_strategy("dip buyer", result.strategy)  # doctest: +SKIP
    """
    from sqlalchemy import select

    from workbench import store

    if isinstance(template, Mapping):
        # "type" names a template (get_template says when it does not)
        params, risk_limits, template = (
            template.get("params"),
            template.get("risk_limits"),
            cast(str, template.get("type")),
        )
    tpl = template if isinstance(template, Template) else get_template(template)
    if not isinstance(name, str) or not name.strip():
        raise StrategyError(f"a strategy needs a non-empty name, not {name!r}")
    clean_params, clean_risk = tpl.validate(params), tpl.validate_risk(risk_limits)
    with store.session() as scope:
        latest = scope.execute(
            select(store.Strategy.id, store.Strategy.version)
            .where(store.Strategy.name == name.strip())
            .order_by(store.Strategy.version.desc())
            .limit(1)
        ).first()
        row = store.Strategy(
            name=name.strip(),
            template=tpl.name,
            params=clean_params,
            risk_limits=clean_risk,
            version=latest.version + 1 if latest else 1,
            parent_id=latest.id if latest else None,
        )
        scope.add(row)
        scope.flush()
        scope.refresh(row)
        return _row(row)


def load_strategy(
    strategy: str | int, version: int | None = None, *, opener: Callable[[], Any] | None = None
) -> SavedStrategy:
    """A saved strategy by name (its newest version, or ``version``) or by id. ``opener``: the
    session factory to read with (default ``store.session``; the hub's service passes the caller's)."""
    from workbench import store

    with (opener or store.session)() as scope:
        return _row(_find(scope, strategy, version))


def list_strategies(all_versions: bool = False) -> pd.DataFrame:
    """Your saved strategies, newest version of each name (or every version), as a table."""
    import pandas as pd
    from sqlalchemy import select

    from workbench import store

    with store.session() as scope:
        rows = [
            _row(r) for r in scope.scalars(select(store.Strategy).order_by(store.Strategy.name, store.Strategy.version))
        ]
    if not all_versions:
        newest = {r.name: r for r in rows}
        rows = list(newest.values())
    columns = ["id", "name", "version", "template", "params", "risk_limits", "is_locked", "created_at"]
    return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)


def clone_strategy(strategy: str | int, new_name: str, params: Mapping[str, Any] | None = None) -> SavedStrategy:
    """Copy a strategy under a new name (optionally changing some parameters)."""
    from workbench import store

    source = load_strategy(strategy)
    if new_name in set(list_strategies()["name"]):
        raise StrategyError(f"a strategy named {new_name!r} exists already; save to it to add a version")
    saved = save_strategy(new_name, source.template, {**source.params, **(params or {})}, source.risk_limits)
    with store.session() as scope:  # the clone remembers its origin
        cast(store.Strategy, scope.get(store.Strategy, saved.id)).parent_id = source.id
    return load_strategy(saved.id)


def delete_strategy(strategy: str | int) -> None:
    """Delete every version of a strategy; refused while a live session uses one of them."""
    from sqlalchemy import delete, select

    from workbench import store

    with store.session() as scope:
        row = _find(scope, strategy)
        ids = (
            [row.id]
            if isinstance(strategy, int)
            else list(scope.scalars(select(store.Strategy.id).where(store.Strategy.name == row.name)))
        )
        sessions = scope.execute(
            select(store.TradingSession.id, store.TradingSession.status).where(
                store.TradingSession.strategy_id.in_(ids)
            )
        ).all()
        live = [s for s in sessions if s.status in _LIVE]
        if live:
            raise StrategyError(
                f"strategy {row.name!r} is used by live session #{live[0].id} ({live[0].status}); "
                "stop the session before deleting the strategy"
            )
        if sessions:
            raise StrategyError(
                f"strategy {row.name!r} has trading history (session #{sessions[0].id}); "
                "it is kept so the session's records stay explained"
            )
        scope.execute(delete(store.Strategy).where(store.Strategy.id.in_(ids)))
