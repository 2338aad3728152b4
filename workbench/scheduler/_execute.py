"""The worker's side of one run: claim it, run it in a warm kernel of its tenant, record the outcome.

A run takes a kernel from the worker's pool (``_pool``): a process of the run's tenant that
has run nothing yet, started with an environment built from an allow-list: the tenant's own
database URL, a private HOME and WORKBENCH_HOME, IPython and Jupyter folders inside the
slot's 0700 temporary folder. The owner URL, the role secret and the master key never reach
it. When the worker runs as root and the unix account ``jupyter-<tenant>`` exists, the kernel
runs as it. When the session trades on an exchange account, its keys are decrypted now and
handed to this run's kernel only (``_keys``).

Outcomes: ``succeeded``; ``failed`` with the failing cell's number (among the notebook's
code cells) and its error, or the run's own error (kernel died, timeout); ``skipped`` when
the live notebook or the session stopped being runnable after the run was queued. A failed
notebook is not retried: the next scheduled run starts from the exchange's and database's
state. Only a kernel lost before the run started (nothing of the run executed) is replaced
by another one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import nbformat
from sqlalchemy import func, text, update
from sqlalchemy.exc import DBAPIError

from workbench import store
from workbench._home import home
from workbench.jobs import SCHEMA
from workbench.scheduler._keys import KeyHandoff
from workbench.scheduler._pool import Finished, KernelPool, Slot, SlotLost, TenantSetup, passed_environment
from workbench.store.models import LiveNotebook, NotebookRun, Tenant, TradingSession

_log = logging.getLogger("workbench.scheduler")

RUN_TIMEOUT = 600.0  # seconds a run may take before it is killed
_ATTEMPTS = 3  # kernels a run may lose before its start (each is replaced) before it fails
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_LINES = 12
_DB_RETRY_SECONDS = 120.0
T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    """A run this worker took: everything needed to execute it."""

    run_id: int
    session_id: int
    tenant: str
    account_id: int | None
    scheduled_for: datetime
    content: str


@dataclass
class Outcome:
    status: str
    error: str | None = None
    failing_cell: int | None = None
    output_path: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fence:
    """The job a run came with and the worker's ``--stalled-after``: a run starts only while that
    job is still being worked on by a worker whose heartbeat is younger than ``stalled_after``.

    A worker cut off from the database longer than that is presumed dead: the others mark its
    runs abandoned and free their sessions. When the network comes back it may still fetch a
    job before its own heartbeat is fresh again; the fence records such a run abandoned without
    starting it (the session's next run goes on) instead of executing a tick that the others'
    sweep would record abandoned while it trades."""

    job_id: int
    stalled_after: float
    rejoin: Callable[[], None] | None = None  # the worker's: end this job loop and register afresh


_FENCE = text(
    f"SELECT 1 FROM {SCHEMA}.procrastinate_jobs j JOIN {SCHEMA}.procrastinate_workers w ON w.id = j.worker_id "
    "WHERE j.id = :job AND j.status = 'doing' AND w.last_heartbeat > now() - make_interval(secs => :stalled)"
)


async def execute_run(
    run_id: int, worker: str, pool: KernelPool, timeout: float = RUN_TIMEOUT, fence: Fence | None = None
) -> None:
    """Run ``run_id`` in a kernel from ``pool`` if it is still queued (and ``fence`` holds);
    record how it ended."""
    claim = await database(_claim, run_id, fence)
    if claim is None:
        return
    if isinstance(claim, _PresumedDead):
        if fence is not None and fence.rejoin is not None:
            fence.rejoin()  # its heartbeat is lost: a new job loop beats again
        return
    _log.info("run #%d of session #%d (%s) started by %s", run_id, claim.session_id, claim.tenant, worker)
    try:
        outcome = await _execute(claim, pool, timeout)
    except Exception as exc:  # the worker's own part failed (kernel, vault, disk): say so on the run
        _log.exception("run #%d could not be executed", run_id)
        outcome = Outcome("failed", f"the worker could not execute the run: {type(exc).__name__}: {exc}")
    await database(_record, claim.run_id, outcome)
    _log.info("run #%d of session #%d %s", run_id, claim.session_id, outcome.status)


async def database(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` in a thread (the worker's event loop keeps beating), retried while the
    database is unreachable, e.g. restarting, for up to two minutes."""
    deadline = time.monotonic() + _DB_RETRY_SECONDS
    while True:
        try:
            return await asyncio.to_thread(call, *args)
        except DBAPIError as exc:
            if not exc.connection_invalidated and "connection" not in str(exc.orig).lower():
                raise
            if time.monotonic() > deadline:
                raise
            _log.warning("database unreachable (%s); retrying", str(exc.orig).splitlines()[0])
            await asyncio.sleep(1.0)


async def tenant_setup(tenant: str) -> TenantSetup:
    """How ``tenant``'s kernels run; the pool asks for every kernel it starts."""
    return await database(_tenant_setup, tenant)


def run_account(tenant: str) -> pwd.struct_passwd | None:
    """The unix account a run of ``tenant`` executes as: ``jupyter-<tenant>`` when this worker
    runs as root and the account exists, else None (the worker's own account; development)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(f"jupyter-{tenant}")
    except KeyError:
        return None


def _tenant_setup(tenant: str) -> TenantSetup:
    """The tenant's kernels' environment (an allow-list: nothing else is inherited) and account."""
    account = run_account(tenant)
    owner = (account.pw_uid, account.pw_gid) if account else None
    runs = home() / "runs"
    runs.mkdir(mode=0o711, exist_ok=True)
    runs.chmod(0o711)  # each tenant passes through to its own folder; none lists the others' names
    tenant_runs = runs / tenant
    tenant_runs.mkdir(mode=0o700, exist_ok=True)
    tenant_home = tenant_runs / "home"
    tenant_home.mkdir(mode=0o700, exist_ok=True)
    if owner:  # root's folders (none is the tenant's to replace); the group is the tenant's own
        os.chown(tenant_runs, -1, owner[1])
        tenant_runs.chmod(0o750)
        os.chown(tenant_home, *owner)
    env = passed_environment()
    env.update(
        {
            "HOME": str(tenant_home),
            "WORKBENCH_HOME": str(tenant_home),
            store.TENANT_URL_ENV: store.tenant_url(tenant),
            "MPLBACKEND": "Agg",
        }
    )
    return TenantSetup(env, owner)


class _PresumedDead:
    """``_claim``'s answer when the fence stopped the run."""


def _claim(run_id: int, fence: Fence | None = None) -> Claim | _PresumedDead | None:
    with store.owner_session() as db:
        run = db.get(NotebookRun, run_id, with_for_update=True)
        if run is None or run.status != "queued":
            return None  # already taken (a job delivered twice) or abandoned
        if (
            fence is not None
            and db.execute(_FENCE, {"job": fence.job_id, "stalled": fence.stalled_after}).first() is None
        ):
            _log.warning(
                "run #%d not started: this worker is presumed dead (no heartbeat for %g s)", run_id, fence.stalled_after
            )
            run.status, run.finished_at = "failed", func.clock_timestamp()
            run.error = (
                f"abandoned: the worker that took it had sent no heartbeat for {fence.stalled_after:g} s "
                "(cut off from the database); not started, the next scheduled run picks up the session's state"
            )
            return _PresumedDead()
        # foreign keys: the run's live notebook, its session and its tenant exist
        live = cast(LiveNotebook, db.get(LiveNotebook, run.live_notebook_id))
        trading = cast(TradingSession, db.get(TradingSession, live.session_id))
        tenant = cast(Tenant, db.get(Tenant, run.tenant_id))
        reason = (
            f"the live notebook is {live.status}"
            if live.status != "active"
            else f"session #{trading.id} is {trading.status}"
            if trading.status != "running" and trading.wind_down_pending is None
            else f"tenant {tenant.name!r} was removed"
            if tenant.removed_at
            else None
        )
        if reason:
            run.status, run.error, run.finished_at = "skipped", f"skipped: {reason}", func.clock_timestamp()
            return None
        run.status, run.started_at = "running", func.clock_timestamp()
        return Claim(run.id, trading.id, tenant.name, trading.exchange_account_id, run.scheduled_for, live.content)


def _record(run_id: int, outcome: Outcome) -> None:
    with store.owner_session() as db:
        db.execute(
            update(NotebookRun)
            .where(NotebookRun.id == run_id, NotebookRun.status == "running")
            .values(
                status=outcome.status,
                error=outcome.error,
                failing_cell=outcome.failing_cell,
                output_path=outcome.output_path,
                timings=outcome.timings,
                finished_at=func.clock_timestamp(),
            )
        )


async def _execute(claim: Claim, pool: KernelPool, timeout: float) -> Outcome:
    asked = time.time()
    lost: SlotLost | None = None
    for _ in range(_ATTEMPTS):
        try:
            slot, warm = await pool.acquire(claim.tenant)
        except SlotLost as exc:
            lost = exc
            continue
        try:
            return await _run_in(slot, warm, claim, timeout, asked)
        except SlotLost as exc:
            lost = exc
            _log.warning("run #%d: %s; taking another kernel", claim.run_id, exc)
        finally:  # a kernel serves one run: after it (or a timeout, or the worker stopping) it is killed
            await pool.release(slot)
    assert lost is not None
    raise lost


@dataclass(frozen=True)
class _Clock:
    asked: float  # the run asked the pool for a kernel (unix time)
    acquired: float  # it had a ready one
    warm: bool  # one was ready at once


async def _run_in(slot: Slot, warm: bool, claim: Claim, timeout: float, asked: float) -> Outcome:
    acquired = time.time()
    handoff: KeyHandoff | None = None
    redactions: list[tuple[str, str]] = []
    arm: list[Any] = [claim.session_id, None, None, None]
    try:
        if claim.account_id is not None:
            keys = await database(_keys_of, claim)
            handoff = KeyHandoff(keys, cast(Path, slot.folder), *(slot.owner or (None, None)))  # a slot has a folder
            await handoff.start()
            arm = [claim.session_id, claim.account_id, str(handoff.path), handoff.token]
            redactions = [*keys.redactions(), (handoff.token, "***")]
        parameters = {
            "session_id": claim.session_id,
            "run_id": claim.run_id,
            "scheduled_for": claim.scheduled_for.isoformat(),
        }
        try:
            finished = await slot.run({"notebook": claim.content, "parameters": parameters, "arm": arm}, timeout)
        except TimeoutError:
            return Outcome("failed", f"timed out: the run took longer than {timeout:g} s and was killed")
        output = _read_output(slot.work / "output.ipynb", slot.owner[0] if slot.owner else os.getuid())
        return _outcome(claim, output, slot.output(), finished, redactions, _Clock(asked, acquired, warm))
    finally:
        if handoff is not None:
            await handoff.close()


def _keys_of(claim: Claim) -> Any:
    from workbench.vault import KeyUse, LocalVault

    use = KeyUse("live run", session_id=claim.session_id, run_id=claim.run_id)  # recorded in the key audit log
    return LocalVault(tenant=claim.tenant).keys_for(cast(int, claim.account_id), use)  # asked only with an account


def _read_output(path: Path, uid: int) -> str | None:
    """The output notebook the run wrote, if it is a regular file of the run's own account: the
    work folder is the tenant's, so a symlink or someone else's file there is not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a planted fifo does not block
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as file:
        info = os.fstat(fd)
        return file.read() if stat.S_ISREG(info.st_mode) and info.st_uid == uid else None


def _outcome(
    claim: Claim, output: str | None, log: str, finished: Finished, redactions: list[tuple[str, str]], clock: _Clock
) -> Outcome:
    done = time.time()
    notebook = None
    saved = None
    if output is not None:
        text = _redact(output, redactions)
        saved = _save(claim, text)
        notebook = nbformat.reads(text, as_version=4)
    timings = _timings(notebook, clock, done)
    if finished.code == 0 and notebook is not None:
        return Outcome("succeeded", output_path=saved, timings=timings)
    cell, error = _failing_cell(notebook) if notebook is not None else (None, None)
    if error is None:
        tail = _redact(log, redactions)[-2000:]
        error = f"the run failed outside its cells: {_redact(finished.error or 'no output notebook', redactions)}"
        error = f"{error}\n{tail}".rstrip()
    return Outcome("failed", error, cell, saved, timings)


def _save(claim: Claim, text: str) -> str:
    """Keep the (scrubbed) output notebook in the tenant's runs folder; its path."""
    folder = home() / "runs" / claim.tenant / f"session-{claim.session_id}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"run-{claim.run_id}.ipynb"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return str(path)


def _code_cells(notebook: Any) -> list[Any]:
    """The notebook's own code cells (papermill's injected parameters cell left out)."""
    return [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
    ]


def _failing_cell(notebook: Any) -> tuple[int | None, str | None]:
    for number, cell in enumerate(_code_cells(notebook), 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                trace = _ANSI.sub("", "\n".join(out.get("traceback", []))).strip().splitlines()
                detail = "\n".join(trace[-_TRACEBACK_LINES:])
                return number, f"cell {number}: {out['ename']}: {out['evalue']}\n{detail}"
    return None, None


def _timings(notebook: Any, clock: _Clock, finished: float) -> dict[str, Any]:
    """Seconds per phase: waiting for a ready kernel (``kernel_wait``, 0 when one was ``warm``),
    from asking for it to the first cell (``kernel_start``), each code cell, cells summed by tag
    (e.g. ``imports``, ``tick``), and the ``total`` from asking for a kernel to the end."""
    timings: dict[str, Any] = {
        "total": round(finished - clock.asked, 3),
        "warm": clock.warm,
        "kernel_wait": round(clock.acquired - clock.asked, 3),
    }
    cells = _code_cells(notebook) if notebook is not None else []
    meta = [cell.get("metadata", {}).get("papermill", {}) for cell in cells]
    starts = [datetime.fromisoformat(m["start_time"]).timestamp() for m in meta if m.get("start_time")]
    if starts:
        timings["kernel_start"] = round(min(starts) - clock.asked, 3)
    timings["cells"] = [round(m.get("duration") or 0.0, 3) for m in meta]
    for cell, m in zip(cells, meta):
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag != "parameters":
                timings[tag] = round(timings.get(tag, 0.0) + (m.get("duration") or 0.0), 3)
    return timings


def _redact(text: str, redactions: list[tuple[str, str]]) -> str:
    for plain, shown in redactions:
        text = text.replace(plain, shown)
    return text
