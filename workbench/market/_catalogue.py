"""The catalogue: publish, update and withdraw a listing (its author), browse and open one
(everybody). Every query runs as the caller's database role, so row-level security (see
migration 0008) decides what is visible and writable; the checks here only turn a refusal
into a clear message. ``opener`` lets trusted code (the CLI, the hub) act as the operator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, cast

from workbench.errors import MarketError
from workbench.market._listing import Listing
from workbench.market._snapshot import DEFAULT_DATASET, Snapshot, backtest_options, resolve_strategy, take

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from workbench.store.models import MarketListing

Opener = Callable[[], AbstractContextManager["Session"]]

_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{2,9}")
_MAX_PRICE = Decimal("1e12")
BROWSE_METRICS = ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "trades")


def publish(
    strategy: Any,
    *,
    name: str | None = None,
    description: str = "",
    price: float | str | Decimal = 0,
    currency: str = "USD",
    dataset: str | pd.DataFrame = DEFAULT_DATASET,
    dataset_name: str | None = None,
    **backtest: Any,
) -> Listing:
    """Publish one of your strategies to the shared catalogue; the listing is a snapshot.

    Args:
        strategy: a saved strategy of yours (name, id or ``SavedStrategy``) or a strategy JSON
            such as ``result.strategy``.
        name: the listing's name (default: the saved strategy's name).
        description: free text shown in the catalogue.
        price: 0 (free: anyone may clone it) or a price; cloning a paid listing needs an
            entitlement, granted by you or the operator (no payment is processed here).
        currency: the price's currency code.
        dataset: the data set the published metrics are measured on: a bundled one's name
            (default ``"btcusd_1h"``) or a candle DataFrame, named by ``dataset_name``.
        **backtest: :func:`workbench.backtest` settings (fees, slippage, init_cash...).

    Only the listing is shared: its name, description, template, metrics, equity curve and
    data set; the parameters too once a tenant may clone it. Nothing else of yours is.
    """
    from workbench import store
    from workbench.store.models import MarketListing, MarketListingParams

    saved_name, template, params, risk = resolve_strategy(strategy)
    fields = {
        "name": _text(name if name is not None else saved_name, "name", required=True),
        "description": _text(description, "description"),
        "price": _price(price),
        "currency": _currency(currency),
    }
    snap = take(template, params, risk, dataset, dataset_name, backtest)
    with store.session() as db:
        row = MarketListing(**fields, **_listing_columns(snap))
        db.add(row)
        db.flush()
        db.add(MarketListingParams(listing_id=row.id, params=snap.params, risk_limits=snap.risk_limits))
        db.flush()
        return read(db, row.id)


def update(
    listing: int,
    *,
    strategy: Any = None,
    name: str | None = None,
    description: str | None = None,
    price: float | str | Decimal | None = None,
    currency: str | None = None,
    dataset: str | pd.DataFrame | None = None,
    dataset_name: str | None = None,
    **backtest: Any,
) -> Listing:
    """Change your listing. A new ``strategy``, ``dataset`` or backtest setting measures it
    again and takes a new snapshot (``version`` + 1); name, description and price change in
    place. Clones already made are their owners' and do not change."""
    from workbench import store
    from workbench.store.models import MarketListingParams

    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _text(name, "name", required=True)
    if description is not None:
        changes["description"] = _text(description, "description")
    if price is not None:
        changes["price"] = _price(price)
    if currency is not None:
        changes["currency"] = _currency(currency)
    remeasure = strategy is not None or dataset is not None or dataset_name is not None or bool(backtest)
    if not changes and not remeasure:
        raise MarketError(
            "nothing to update: pass strategy, name, description, price, currency, dataset or backtest settings"
        )
    resolved = resolve_strategy(strategy)[1:] if strategy is not None else None
    with store.session() as db:
        row = find(db, listing)
        check_author(db, row, "update", operator=False)
        if row.status != "listed":
            raise MarketError(f"listing #{row.id} is withdrawn; publish the strategy again instead")
        if remeasure:
            kept = cast(MarketListingParams, db.get(MarketListingParams, row.id))  # the author's listing has them
            template, params, risk = resolved or (row.template, kept.params, kept.risk_limits)
            if dataset is None:
                if not row.dataset_info.get("bundled"):
                    raise MarketError(
                        f"listing #{row.id} was measured on {row.dataset!r}, which is not bundled; "
                        f"pass its candles (dataset=..., dataset_name=...) to measure it again"
                    )
                dataset = row.dataset
            snap = take(template, params, risk, dataset, dataset_name, {**backtest_options(row.settings), **backtest})
            changes.update(_listing_columns(snap), version=row.version + 1)
            kept.params, kept.risk_limits = snap.params, snap.risk_limits
        for column, value in changes.items():
            setattr(row, column, value)
        db.flush()
        return read(db, row.id)


def withdraw(listing: int, *, opener: Opener | None = None) -> Listing:
    """Take a listing off the catalogue (its author, or the operator). Nobody can clone it any
    more; clones already made stay with their owners."""
    from sqlalchemy import func

    from workbench import store

    with (opener or store.session)() as db:
        row = find(db, listing)
        check_author(db, row, "withdraw")
        if row.status == "listed":
            row.status, row.withdrawn_at = "withdrawn", func.now()
            db.flush()
        return read(db, row.id)


def listing(listing: int, *, opener: Opener | None = None) -> Listing:
    """One listing: published metrics, ``.figure``, ``.stats()``; ``.params`` when you may clone it."""
    from workbench import store

    with (opener or store.session)() as db:
        return read(db, listing)


def browse(
    template: str | None = None,
    *,
    free: bool | None = None,
    search: str | None = None,
    min_metrics: Mapping[str, float] | None = None,
    max_metrics: Mapping[str, float] | None = None,
    opener: Opener | None = None,
) -> pd.DataFrame:
    """The catalogue as a table, filtered: by ``template``, ``free`` (True: free only, False:
    paid only), ``search`` (case-insensitive text in name or description), and published
    metrics, e.g. ``min_metrics={"sharpe": 1}, max_metrics={"max_drawdown": 0.3}`` (a listing
    whose metric does not exist is left out). ``cloneable`` says whether you may clone it."""
    import pandas as pd
    from sqlalchemy import Float, or_, select

    from workbench import store
    from workbench.store.models import MarketListing as L
    from workbench.store.models import MarketListingParams as P

    query = (
        select(
            L.id,
            L.name,
            L.author,
            L.template,
            L.price,
            L.currency,
            L.dataset,
            *[L.metrics[m].astext.cast(Float).label(m) for m in BROWSE_METRICS],
            P.listing_id.is_not(None).label("cloneable"),
            L.status,
            L.version,
            L.updated_at,
            L.description,
        )
        .outerjoin(P, P.listing_id == L.id)
        .order_by(L.id)
    )
    if template is not None:
        query = query.where(L.template == template)
    if free is not None:
        query = query.where(L.price == 0 if free else L.price > 0)
    if search is not None:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", _text(search, "search")) + "%"
        query = query.where(or_(L.name.ilike(pattern, escape="\\"), L.description.ilike(pattern, escape="\\")))
    for bounds, compare in ((min_metrics, "__ge__"), (max_metrics, "__le__")):
        for metric, bound in _metric_bounds(bounds).items():
            query = query.where(getattr(L.metrics[metric].astext.cast(Float), compare)(bound))
    with (opener or store.session)() as db:
        rows = db.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(query.selected_columns.keys()))
    return frame.set_index("id")


# --- helpers shared with _clone and _entitlements ----------------------------------------------


def find(db: Session, listing: int) -> MarketListing:
    """The listing row, if the caller's role can see it."""
    from workbench.store.models import MarketListing

    if isinstance(listing, bool) or not isinstance(listing, int):
        raise MarketError(f"a listing is named by its id (an int), not {listing!r:.40}")
    row = db.get(MarketListing, listing)
    if row is None:
        raise MarketError(
            f"no listing #{listing} in the catalogue (a withdrawn listing is visible to its "
            f"author only); browse() shows them"
        )
    return row


def read(db: Session, listing: int) -> Listing:
    """The listing with its parameters when the caller's role may read them."""
    from workbench.store.models import MarketListingParams

    row = find(db, listing)
    params = db.get(MarketListingParams, row.id)
    return Listing(
        id=row.id,
        name=row.name,
        description=row.description,
        author=row.author,
        template=row.template,
        dataset=row.dataset,
        dataset_info=dict(row.dataset_info),
        settings=dict(row.settings),
        metrics=dict(row.metrics),
        equity_curve=dict(row.equity_curve),
        price=row.price,
        currency=row.currency,
        status=row.status,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        params=dict(params.params) if params else None,
        risk_limits=dict(params.risk_limits) if params else None,
    )


def me(db: Session) -> str | None:
    """The connected tenant's name; None for the operator (the owner role)."""
    from sqlalchemy import func, select

    return db.scalar(select(func.current_tenant_name()))


def check_author(db: Session, row: MarketListing, action: str, operator: bool = True) -> None:
    """MarketError unless the caller is the listing's author (or, when ``operator``, the operator)."""
    caller = me(db)
    if caller is None and operator:
        return
    if caller != row.author:
        who = "its author" + (" or the operator" if operator else "")
        raise MarketError(f"listing #{row.id} belongs to {row.author!r}: only {who} can {action} it")


def _listing_columns(snap: Snapshot) -> dict[str, Any]:
    return {
        "template": snap.template,
        "dataset": snap.dataset,
        "dataset_info": snap.dataset_info,
        "settings": snap.settings,
        "metrics": snap.metrics,
        "equity_curve": snap.equity_curve,
    }


def _text(value: Any, field: str, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise MarketError(f"{field}: expected {'a non-empty' if required else 'a'} string, not {value!r:.40}")
    return value.strip()


def _price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value)) if not isinstance(value, bool) else None
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite() or not 0 <= price < _MAX_PRICE:
        raise MarketError(
            f"price: {value!r:.40} is not allowed; expected 0 (free) or a positive amount below {_MAX_PRICE:,.0f}"
        )
    return price


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise MarketError(f"currency: {value!r:.40} is not a currency code (e.g. 'USD', 'USDT')")
    return value


def _metric_bounds(bounds: Mapping[str, float] | None) -> dict[str, float]:
    from workbench.engine.core import METRIC_NAMES

    if bounds is None:
        return {}
    if not isinstance(bounds, Mapping):
        raise MarketError(f"metric bounds: expected a mapping like {{'sharpe': 1.0}}, not {bounds!r:.40}")
    for metric, bound in bounds.items():
        if metric not in METRIC_NAMES:
            raise MarketError(f"unknown metric {metric!r}; the metrics are {', '.join(METRIC_NAMES)}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound:
            raise MarketError(f"metric bound {metric}: expected a number, not {bound!r:.40}")
    return {metric: float(bound) for metric, bound in bounds.items()}
