"""Entitlements: who may clone a paid listing. The listing's author grants them (the database
refuses anyone else's), or the operator does through ``opener=store.owner_session`` (the
``workbench market grant`` command). No payment is processed; recording the right is all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from workbench.errors import MarketError
from workbench.market._catalogue import Opener, check_author, find

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Entitlement:
    """Tenant ``grantee`` may clone listing ``listing_id``; ``granted_by`` None: the operator."""

    listing_id: int
    grantee: str
    granted_by: str | None
    created_at: datetime


def grant(listing: int, tenant: str, *, opener: Opener | None = None) -> Entitlement:
    """Let ``tenant`` clone your paid listing (granting twice changes nothing)."""
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.exc import IntegrityError

    from workbench import store
    from workbench.store.models import MarketEntitlement

    store.validate_name(tenant)
    with (opener or store.session)() as db:
        row = find(db, listing)
        check_author(db, row, "grant entitlements to")
        if tenant == row.author:
            raise MarketError(f"{tenant!r} is the author of listing #{row.id} and needs no entitlement")
        try:
            db.execute(insert(MarketEntitlement).values(listing_id=row.id, grantee=tenant).on_conflict_do_nothing())
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) == "23503":  # foreign key: no such tenant
                raise MarketError(f"no tenant named {tenant!r}") from None
            raise
        granted = cast(MarketEntitlement, db.get(MarketEntitlement, (row.id, tenant)))  # inserted, or there already
        return Entitlement(granted.listing_id, granted.grantee, granted.granted_by, granted.created_at)


def entitlements(*, opener: Opener | None = None) -> pd.DataFrame:
    """The entitlements you can see: those to your listings and those granted to you."""
    import pandas as pd
    from sqlalchemy import select

    from workbench import store
    from workbench.store.models import MarketEntitlement as E
    from workbench.store.models import MarketListing as L

    query = (
        select(E.listing_id, L.name.label("listing"), L.author, E.grantee, E.granted_by, E.created_at)
        .outerjoin(L, L.id == E.listing_id)
        .order_by(E.listing_id, E.grantee)
    )
    with (opener or store.session)() as db:
        rows = db.execute(query).all()
    return pd.DataFrame(rows, columns=list(query.selected_columns.keys()))
