"""The dispatcher: turns due live notebooks into queued runs and procrastinate jobs.

Every worker runs it at each due time and at least once a second (``demand`` tells it the
next due time); any number may, because each pass locks the due live notebooks it handles
(``FOR UPDATE SKIP LOCKED``) and a run is unique per live notebook and scheduled time. In
one transaction a pass creates the run, advances ``next_run_at`` and defers the job
(procrastinate's defer on that transaction's connection), so a crash leaves either all three
or none.

Coalescing: a live notebook whose due time passed while everything was down gets one run,
for the latest due time, never one per missed time. A due session whose previous job is
still waiting gets a ``skipped`` run instead of a second job. Sessions that are not
``running`` get no run; their schedule moves on.

Abandoned runs: a worker that dies mid-run stops sending heartbeats; the next pass after
``stalled_after`` seconds marks its run ``failed`` (abandoned) and its job failed, which
releases the session's lock. Such a run is not started again: its process died with the
worker (its slot watches the worker's socket), and the next scheduled run reconciles the
session with the exchange, as every tick does.

Demand: ``demand`` counts each tenant's live notebooks of running sessions, soonest due
first; the worker keeps warm kernels for them (``_pool``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import procrastinate
from procrastinate.jobs import Status
from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from workbench import store
from workbench.jobs import QUEUE, SCHEMA
from workbench.scheduler._execute import database
from workbench.scheduler._queue import TASK, session_lock
from workbench.scheduler._schedule import parse_schedule
from workbench.store.models import LiveNotebook, NotebookRun, Tenant, TradingSession

_log = logging.getLogger("workbench.scheduler")

# Defers on the dispatcher's own transaction (procrastinate's ``connection=`` option of
# ``configure``): a synchronous connector, never opened, for it runs no query of its own.
_DEFERRER = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
# a session's notebook runs while it trades, and after it stopped or failed while its wind-down
# could not secure the position yet (each run tries again: workbench.live.tick)
_RUNNABLE = (TradingSession.status == "running") | TradingSession.wind_down_pending.is_not(None)
_WAITING = text(f"SELECT 1 FROM {SCHEMA}.procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'")


def dispatch_due(now: datetime | None = None) -> list[int]:
    """One dispatcher pass; the ids of the runs it queued."""
    now = now or datetime.now(UTC)
    queued = []
    with store.owner_session() as db:
        due = db.execute(
            select(LiveNotebook, _RUNNABLE)
            .join(
                TradingSession,
                (TradingSession.tenant_id == LiveNotebook.tenant_id) & (TradingSession.id == LiveNotebook.session_id),
            )
            .where(LiveNotebook.status == "active", LiveNotebook.next_run_at <= now)
            .order_by(LiveNotebook.next_run_at)
            .with_for_update(of=LiveNotebook, skip_locked=True)
        ).all()
        if due:  # procrastinate's functions resolve their tables through the search path
            db.execute(text(f"SET LOCAL search_path TO {SCHEMA}, public"))
        for live, runnable in due:
            schedule = parse_schedule(live.schedule)
            scheduled_for = schedule.latest(now)  # coalesced: one run however many were missed
            live.next_run_at = schedule.next_after(now)
            if not runnable:
                continue
            lock = session_lock(live.session_id)
            if db.execute(_WAITING, {"lock": lock}).first() is not None:
                continue  # the session's previous run has not started yet: it is this one, late
            run_id = db.scalar(
                insert(NotebookRun)
                .values(tenant_id=live.tenant_id, live_notebook_id=live.id, scheduled_for=scheduled_for)
                .on_conflict_do_nothing()
                .returning(NotebookRun.id)
            )
            if run_id is None:
                continue
            job_id = _DEFERRER.configure_task(
                TASK,
                queue=QUEUE,
                lock=lock,
                queueing_lock=lock,
                connection=db.connection().connection.driver_connection,
            ).defer(run_id=run_id)
            db.execute(update(NotebookRun).where(NotebookRun.id == run_id).values(job_id=job_id))
            queued.append(run_id)
    if queued:
        _log.info("queued runs %s", queued)
    return queued


@dataclass(frozen=True)
class Demand:
    """Who will need kernels, and when the dispatcher is next needed."""

    tenants: list[tuple[str, int]]  # (tenant, live notebooks of running sessions), soonest due first
    next_due: datetime | None  # the earliest due time among them


def demand() -> Demand:
    """Each tenant's live notebooks of running sessions (or with a wind-down due), soonest due first."""
    soonest = func.min(LiveNotebook.next_run_at)
    with store.owner_session() as db:
        rows = db.execute(
            select(Tenant.name, func.count(), soonest)
            .join(LiveNotebook, LiveNotebook.tenant_id == Tenant.id)
            .join(
                TradingSession,
                (TradingSession.tenant_id == LiveNotebook.tenant_id) & (TradingSession.id == LiveNotebook.session_id),
            )
            .where(LiveNotebook.status == "active", _RUNNABLE, Tenant.removed_at.is_(None))
            .group_by(Tenant.name)
            .order_by(soonest)
        ).all()
    return Demand([(name, count) for name, count, _ in rows], min((due for *_, due in rows if due), default=None))


async def sweep_abandoned(app: procrastinate.App, stalled_after: float) -> list[int]:
    """Mark the runs of dead workers failed and their jobs failed; the run ids."""
    jobs = await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled_after)
    abandoned: list[int] = []
    for job in jobs:
        run_id = cast("int | None", job.task_kwargs.get("run_id"))  # the task's keyword, a run id
        if run_id is not None and await database(_abandon, run_id, stalled_after):
            abandoned.append(run_id)
        await app.job_manager.finish_job(job=job, status=Status.FAILED, delete_job=False)
    if abandoned:
        _log.warning("runs %s abandoned by a worker that stopped", abandoned)
    return abandoned


def _abandon(run_id: int, stalled_after: float) -> bool:
    with store.owner_session() as db:
        return (
            cast(  # an UPDATE: a cursor result
                CursorResult[Any],
                db.execute(
                    update(NotebookRun)
                    .where(NotebookRun.id == run_id, NotebookRun.status.in_(("queued", "running")))
                    .values(
                        status="failed",
                        finished_at=func.clock_timestamp(),
                        error=f"abandoned: the worker running it stopped (no heartbeat for "
                        f"{stalled_after:g} s); not retried, the next scheduled run "
                        f"picks up the session's state",
                    )
                ),
            ).rowcount
            > 0
        )
