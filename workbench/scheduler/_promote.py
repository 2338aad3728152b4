"""Promotion: a notebook becomes the frozen, scheduled live notebook of one trading session.

These functions run in the tenant's own process (a notebook, its CLI) and connect as the
tenant (``store.session()``), so row-level security decides which sessions exist: another
tenant's session is "no session #N", exactly like one that was never created. The trusted
side (``workbench live`` as the operator) passes an owner session instead.

Real money waits for a certificate: PostgreSQL refuses to make a live notebook of a session
that trades on any exchange but the paper one active (promote, resume) unless the platform
certified the session's strategy as it is now (revision 0016, ``workbench.research._certify``);
its one-line reason becomes a :class:`SchedulerError` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import nbformat
from sqlalchemy import Table, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from workbench import store
from workbench.errors import SchedulerError
from workbench.scheduler._schedule import parse_schedule
from workbench.store.models import LiveNotebook, NotebookRun, Tenant, TradingSession

# what the scheduler injects into every run (papermill parameters)
INJECTED = ("session_id", "run_id", "scheduled_for")
LIVE = ("active", "paused")  # a session has at most one live notebook in these states
GATE = "certificate gate: "  # how the database's refusal of an uncertified real-money notebook starts

Opener = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class LiveStatus:
    """One live notebook as ``workbench live list`` shows it."""

    tenant: str
    session_id: int
    symbol: str
    session_status: str
    notebook: str
    version: int
    schedule: str
    status: str
    next_run_at: datetime | None
    last_run: str | None  # "succeeded at 12:05:03", "failed: ZeroDivisionError..."


def check_notebook(notebook: str | Path) -> tuple[Path, str]:
    """The notebook's resolved path and text, if papermill can run it as a live notebook:
    it exists and its ``parameters`` cell defines every injected parameter."""
    import papermill

    path = Path(notebook).expanduser().resolve()
    if not path.is_file():
        raise SchedulerError(f"notebook {str(notebook)!r} does not exist ({path})")
    text = path.read_text(encoding="utf-8")
    try:
        notebook_node = nbformat.reads(text, as_version=4)
    except (nbformat.reader.NotJSONError, json.JSONDecodeError, nbformat.ValidationError) as exc:
        raise SchedulerError(f"{path} is not a readable notebook: {exc}") from None
    if not notebook_node.metadata.get("kernelspec", {}).get("name"):
        raise SchedulerError(
            f"notebook {path.name} names no kernel (metadata.kernelspec); open and save it "
            f"in JupyterLab with the Python 3 kernel"
        )
    if not any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in notebook_node.cells):
        raise SchedulerError(
            f"notebook {path.name} has no cell tagged 'parameters'; add one defining "
            f"{', '.join(INJECTED)} (papermill injects them into every run)"
        )
    missing = [name for name in INJECTED if name not in papermill.inspect_notebook(str(path))]
    if missing:
        raise SchedulerError(
            f"the parameters cell of {path.name} does not define {', '.join(missing)}; "
            f"add e.g. `session_id = 0`, `run_id = 0`, `scheduled_for = ''`"
        )
    return path, text


def promote(notebook: str | Path, session: int, schedule: str, *, opener: Opener | None = None) -> LiveNotebook:
    """Make a frozen copy of ``notebook`` the live notebook of trading session ``session``,
    run on ``schedule`` (``"candle:5m"`` or cron). Promoting again replaces the previous
    version; later edits of the file change nothing until the next promotion."""
    path, text = check_notebook(notebook)
    parsed = parse_schedule(schedule)
    with _gated(), (opener or store.session)() as db:
        trading = _session(db, session)
        if trading.status == "error":
            raise SchedulerError(
                f"session #{session} is in error ({trading.status_message or 'no message'}); "
                f"fix and restart it before promoting a notebook for it"
            )
        db.execute(
            cast(Table, LiveNotebook.__table__)
            .update()
            .where(LiveNotebook.session_id == trading.id, LiveNotebook.status.in_(LIVE))
            .values(status="stopped", next_run_at=None)
        )
        version = (
            cast(
                int,  # coalesce: never NULL
                db.scalar(
                    select(func.coalesce(func.max(LiveNotebook.version), 0)).where(
                        LiveNotebook.session_id == trading.id
                    )
                ),
            )
            + 1
        )
        live = LiveNotebook(
            tenant_id=trading.tenant_id,
            session_id=trading.id,
            source_path=str(path),
            content=text,
            version=version,
            schedule=parsed.text,
            status="active",
            next_run_at=parsed.next_after(_now()),
        )
        db.add(live)
        db.flush()
        db.refresh(live)
    return live


def pause(session: int, *, opener: Opener | None = None) -> LiveNotebook:
    """Stop scheduling runs of the session's live notebook until ``resume``."""
    return _change(session, "paused", opener)


def resume(session: int, *, opener: Opener | None = None) -> LiveNotebook:
    """Schedule runs again from the next due time on (what was missed while paused is not run)."""
    return _change(session, "active", opener)


def demote(session: int, *, opener: Opener | None = None) -> LiveNotebook:
    """The session's notebook is no longer live; the session itself keeps its state."""
    return _change(session, "stopped", opener)


def stop(session: int, *, opener: Opener | None = None) -> LiveNotebook:
    """Demote the session's live notebook and stop the trading session for good
    (``workbench.live.stop``: its records stay, its open orders are cancelled and its position
    is closed, protected by a stop on the exchange or left, as its ``on_error`` setting says)."""
    from workbench import live as sessions

    demoted = demote(session, opener=opener)
    sessions.stop(session, opener=opener)
    return demoted


def run_now(session: int, *, opener: Opener | None = None) -> LiveNotebook:
    """Make the session's live notebook due now (the next dispatch runs it once)."""
    with (opener or store.session)() as db:
        live = _live(db, session)
        if live.status != "active":
            raise SchedulerError(f"the live notebook of session #{session} is {live.status}; resume it first")
        live.next_run_at = _now()
    return live


def live_notebooks(*, opener: Opener | None = None) -> list[LiveStatus]:
    """Every live (active or paused) notebook the connection may see, with its next run."""
    last = (
        select(NotebookRun.live_notebook_id, func.max(NotebookRun.id).label("run_id"))
        .group_by(NotebookRun.live_notebook_id)
        .subquery()
    )
    query = (
        select(LiveNotebook, TradingSession, Tenant.name, NotebookRun)
        .join(
            TradingSession,
            (TradingSession.tenant_id == LiveNotebook.tenant_id) & (TradingSession.id == LiveNotebook.session_id),
        )
        .join(Tenant, Tenant.id == LiveNotebook.tenant_id)
        .outerjoin(last, last.c.live_notebook_id == LiveNotebook.id)
        .outerjoin(NotebookRun, NotebookRun.id == last.c.run_id)
        .where(LiveNotebook.status.in_(LIVE))
        .order_by(Tenant.name, LiveNotebook.session_id)
    )
    with (opener or store.session)() as db:
        return [
            LiveStatus(
                tenant,
                live.session_id,
                trading.symbol,
                trading.status,
                live.source_path,
                live.version,
                live.schedule,
                live.status,
                live.next_run_at,
                _describe(run),
            )
            for live, trading, tenant, run in db.execute(query)
        ]


def _describe(run: NotebookRun | None) -> str | None:
    if run is None:
        return None
    when = run.finished_at or run.started_at or run.scheduled_for
    text = f"#{run.id} {run.status} {when:%Y-%m-%d %H:%M:%S}"
    return f"{text}: {run.error.splitlines()[0]}" if run.error else text


def _change(session: int, status: str, opener: Opener | None) -> LiveNotebook:
    with _gated(), (opener or store.session)() as db:
        live = _live(db, session)
        live.status = status
        live.next_run_at = parse_schedule(live.schedule).next_after(_now()) if status == "active" else None
    return live


@contextmanager
def _gated() -> Iterator[None]:
    """The database's refusal of an uncertified real-money notebook as a one-line SchedulerError."""
    try:
        yield
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or ""
        if not message.startswith(GATE):
            raise
        raise SchedulerError("promotion refused: " + " ".join(message[len(GATE) :].split())) from None


def _session(db: Session, session: int) -> TradingSession:
    trading = db.get(TradingSession, int(session)) if str(session).isdigit() else None
    if trading is None:  # row-level security hides other tenants' sessions: same message
        raise SchedulerError(f"no session #{session}")
    return trading


def _live(db: Session, session: int) -> LiveNotebook:
    trading = _session(db, session)
    live = db.scalar(
        select(LiveNotebook)
        .where(LiveNotebook.session_id == trading.id, LiveNotebook.status.in_(LIVE))
        .with_for_update()
    )
    if live is None:
        raise SchedulerError(
            f"session #{session} has no live notebook; promote one with "
            f"workbench.promote(notebook, {session}, schedule)"
        )
    return live


def _now() -> datetime:
    return datetime.now(UTC)
