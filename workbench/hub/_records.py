"""What the service reads and writes for a tenant, always through that tenant's own role.

The service holds the owner's credentials, but for sessions, live notebooks, runs and shares
it connects as the calling tenant (``store.tenant_session``): row-level security then hides
every other tenant's rows, so a wrong id gives "not found" even if a handler forgot a
check. Only the vault needs the owner role (tenants may not read data keys). Promotion itself
happens in the tenant's server (``wb.promote``), as the tenant; it needs nothing trusted.

A share is a ``dashboard_shares`` row written as its owner; what a viewer then reads of the
owner's session it reads as the viewer, through the policies of revision 0011.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from workbench import store
from workbench.errors import HubError
from workbench.store.models import DashboardShare, LiveNotebook, NotebookRun, TradingSession

_RUN_LIMIT = 200


class NotFound(HubError, LookupError):
    """The calling tenant has no such session, live notebook, run or account."""


def as_json(row: Any, skip: tuple[str, ...] = ("tenant_id",)) -> dict[str, Any]:
    """A model row as JSON-ready values (Decimal as str, timestamps in ISO 8601)."""
    out = {}
    for column in row.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(row, column.key)
        out[column.key] = (
            str(value) if isinstance(value, Decimal) else value.isoformat() if isinstance(value, datetime) else value
        )
    return out


def sessions(tenant: str) -> list[dict[str, Any]]:
    with store.tenant_session(tenant) as s:
        return [as_json(r) for r in s.scalars(select(TradingSession).order_by(TradingSession.id))]


def session(tenant: str, session_id: int) -> dict[str, Any]:
    with store.tenant_session(tenant) as s:
        return as_json(_own_session(s, tenant, session_id))


def _own_session(db: Session, tenant: str, session_id: int) -> TradingSession:
    row = db.get(TradingSession, session_id)
    if row is None:
        raise NotFound(f"tenant {tenant!r} has no trading session {session_id}")
    return row


def live_notebooks(tenant: str, session_id: int | None = None) -> list[dict[str, Any]]:
    query = select(LiveNotebook).order_by(LiveNotebook.id)
    if session_id is not None:
        query = query.where(LiveNotebook.session_id == session_id)
    with store.tenant_session(tenant) as s:
        return [as_json(r, skip=("tenant_id", "content")) for r in s.scalars(query)]


def live_notebook(tenant: str, live_id: int) -> dict[str, Any]:
    with store.tenant_session(tenant) as s:
        row = s.get(LiveNotebook, live_id)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no live notebook {live_id}")
        return as_json(row, skip=("tenant_id", "content"))


def change_schedule(tenant: str, session_id: int, action: str) -> dict[str, Any]:
    """The scheduler's ``pause``/``resume``/``run_now``/``demote``/``stop`` as ``tenant``."""
    from workbench import scheduler

    # one transaction as the tenant: the change and the answer read from it (``stop`` demotes
    # and stops together; columns the database sets on update are read before it closes)
    with store.tenant_session(tenant) as db:
        _own_session(db, tenant, session_id)  # NotFound unless the session is the tenant's
        live = getattr(scheduler, action)(session_id, opener=lambda: nullcontext(db))
        return as_json(live, skip=("tenant_id", "content"))


def runs(
    tenant: str, live_id: int | None = None, session_id: int | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest runs first; of one live notebook or one session when asked."""
    query = select(NotebookRun).order_by(NotebookRun.scheduled_for.desc(), NotebookRun.id.desc())
    if live_id is not None:
        query = query.where(NotebookRun.live_notebook_id == live_id)
    if session_id is not None:
        query = query.join(
            LiveNotebook,
            (LiveNotebook.tenant_id == NotebookRun.tenant_id) & (LiveNotebook.id == NotebookRun.live_notebook_id),
        ).where(LiveNotebook.session_id == session_id)
    with store.tenant_session(tenant) as s:
        return [as_json(r) for r in s.scalars(query.limit(max(1, min(limit, _RUN_LIMIT))))]


def run(tenant: str, run_id: int) -> dict[str, Any]:
    with store.tenant_session(tenant) as s:
        row = s.get(NotebookRun, run_id)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no notebook run {run_id}")
        return as_json(row)


def shares(owner: str, session_id: int) -> list[str]:
    """The tenants ``owner``'s session ``session_id`` is shared with."""
    with store.tenant_session(owner) as db:
        _own_session(db, owner, session_id)
        return list(
            db.scalars(
                select(DashboardShare.viewer)
                .where(DashboardShare.session_id == session_id)
                .order_by(DashboardShare.viewer)
            )
        )


def share(owner: str, session_id: int, viewer: str) -> None:
    """Let tenant ``viewer`` read ``owner``'s session ``session_id`` (again: no change)."""
    with store.tenant_session(owner) as db:
        _own_session(db, owner, session_id)
        if viewer not in {t.name for t in store.list_tenants()}:
            raise NotFound(f"no tenant named {viewer!r}")
        db.execute(insert(DashboardShare).values(session_id=session_id, viewer=viewer).on_conflict_do_nothing())


def unshare(owner: str, session_id: int, viewer: str) -> None:
    """Take the share back: the viewer's next read finds nothing."""
    with store.tenant_session(owner) as db:
        _own_session(db, owner, session_id)
        gone = cast(  # a DELETE: a cursor result
            CursorResult[Any],
            db.execute(
                delete(DashboardShare).where(DashboardShare.session_id == session_id, DashboardShare.viewer == viewer)
            ),
        ).rowcount
    if not gone:
        raise NotFound(f"session {session_id} is not shared with {viewer!r}")


def shared_with(viewer: str) -> list[dict[str, Any]]:
    """(owner, session) of every session shared with ``viewer``, read as the viewer."""
    with store.tenant_session(viewer) as db:
        rows = db.execute(
            select(DashboardShare.owner, DashboardShare.session_id)
            .where(DashboardShare.viewer == viewer)
            .order_by(DashboardShare.owner, DashboardShare.session_id)
        )
        return [{"owner": owner, "session": session_id} for owner, session_id in rows]


def shared_owner_id(viewer: str, owner: str, session_id: int) -> int:
    """The tenant id of ``owner`` if it shares session ``session_id`` with ``viewer``."""
    with store.tenant_session(viewer) as db:
        owner_id = db.scalar(
            select(DashboardShare.tenant_id).where(
                DashboardShare.viewer == viewer, DashboardShare.owner == owner, DashboardShare.session_id == session_id
            )
        )
    if owner_id is None:
        raise NotFound(f"{owner!r} shares no session {session_id} with you")
    return owner_id
