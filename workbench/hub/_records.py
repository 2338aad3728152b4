"""What the service reads and writes for a tenant, always through that tenant's own role.

The service holds the owner's credentials, but for sessions, live notebooks and runs it
connects as the calling tenant (``store.tenant_session``): row-level security then hides
every other tenant's rows, so a wrong id gives "not found" even if a handler forgot a
check. Only the vault needs the owner role (tenants may not read data keys). Promotion itself
happens in the tenant's server (``wb.promote``), as the tenant; it needs nothing trusted.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from workbench import store
from workbench.errors import HubError
from workbench.store.models import LiveNotebook, NotebookRun, TradingSession

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
        out[column.key] = (str(value) if isinstance(value, Decimal)
                           else value.isoformat() if isinstance(value, datetime) else value)
    return out


def sessions(tenant: str) -> list[dict[str, Any]]:
    with store.tenant_session(tenant) as s:
        return [as_json(r) for r in s.scalars(select(TradingSession).order_by(TradingSession.id))]


def session(tenant: str, session_id: int) -> dict[str, Any]:
    with store.tenant_session(tenant) as s:
        row = s.get(TradingSession, session_id)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no trading session {session_id}")
        return as_json(row)


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

    session(tenant, session_id)  # NotFound unless the session is the tenant's
    live = getattr(scheduler, action)(session_id, opener=lambda: store.tenant_session(tenant))
    return as_json(live, skip=("tenant_id", "content"))


def runs(tenant: str, live_id: int | None = None, session_id: int | None = None,
         limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs first; of one live notebook or one session when asked."""
    query = select(NotebookRun).order_by(NotebookRun.scheduled_for.desc(), NotebookRun.id.desc())
    if live_id is not None:
        query = query.where(NotebookRun.live_notebook_id == live_id)
    if session_id is not None:
        query = query.join(LiveNotebook, (LiveNotebook.tenant_id == NotebookRun.tenant_id)
                           & (LiveNotebook.id == NotebookRun.live_notebook_id)
                           ).where(LiveNotebook.session_id == session_id)
    with store.tenant_session(tenant) as s:
        return [as_json(r) for r in s.scalars(query.limit(max(1, min(limit, _RUN_LIMIT))))]


def run(tenant: str, run_id: int) -> dict[str, Any]:
    with store.tenant_session(tenant) as s:
        row = s.get(NotebookRun, run_id)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no notebook run {run_id}")
        return as_json(row)

