"""Cloning a listing: its parameters become a new strategy of yours (version 1, remembering
the listing it came from). The parameters are read through your own role, so the database
refuses a paid listing's parameters until you hold an entitlement to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import MarketError
from workbench.market._catalogue import read

if TYPE_CHECKING:
    from workbench.strategies import SavedStrategy


def clone(listing: int, name: str | None = None) -> SavedStrategy:
    """Copy a listing into your strategies under ``name`` (default: the listing's name).

    Later updates or the withdrawal of the listing do not touch the copy. A paid listing needs
    an entitlement (granted by its author or the operator) first.
    """
    from sqlalchemy import select

    from workbench import store
    from workbench.strategies import get_template
    from workbench.strategies._saved import _row

    with store.session() as db:
        listed = read(db, listing)
        listed._require_params("a clone")
        template = get_template(listed.template)  # the listing was written by another tenant:
        params = template.validate(listed.params)  # check it as if typed by hand
        risk = template.validate_risk(listed.risk_limits)
        name = listed.name if name is None else name
        if not isinstance(name, str) or not name.strip():
            raise MarketError(f"a clone needs a non-empty name, not {name!r:.40}")
        name = name.strip()
        if db.scalar(select(store.Strategy.id).where(store.Strategy.name == name).limit(1)) is not None:
            raise MarketError(f"you have a strategy named {name!r} already; clone under another name (name=...)")
        row = store.Strategy(name=name, template=template.name, params=params, risk_limits=risk, listing_id=listed.id)
        db.add(row)
        db.flush()
        db.refresh(row)
        return _row(row)
