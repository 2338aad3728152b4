"""The worker's side of one run: claim it, start the run process as the tenant, record the outcome.

The run process (``_runner``) gets an environment built from an allow-list: the tenant's own
database URL, a private HOME, WORKBENCH_HOME, IPython and Jupyter folders inside the run's
0700 temporary folder, the key hand-off (``_keys``) when the session trades on an exchange
account. The owner URL, the role secret and the master key never reach it. When the worker
runs as root and the unix account ``jupyter-<tenant>`` exists, the run process runs as it.

Outcomes: ``succeeded``; ``failed`` with the failing cell's number (among the notebook's
code cells) and its error, or the run process's own error; ``skipped`` when the live
notebook or the session stopped being runnable after the run was queued. A failed notebook
is not retried: the next scheduled run starts from the exchange's and database's state.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import nbformat
from sqlalchemy import func, update
from sqlalchemy.exc import DBAPIError

from workbench import store
from workbench._home import home
from workbench.scheduler._keys import SESSION_ENV, KeyHandoff
from workbench.scheduler._runner import PARENT_ENV
from workbench.store.models import LiveNotebook, NotebookRun, Tenant, TradingSession

_log = logging.getLogger("workbench.scheduler")

RUN_TIMEOUT = 600.0  # seconds a run may take before it is killed
_PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_LINES = 12
_STARTUP = "from workbench.scheduler._keys import install_from_environment\ninstall_from_environment()\n"
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


async def execute_run(run_id: int, worker: str, timeout: float = RUN_TIMEOUT) -> None:
    """Run ``run_id`` if it is still queued; record how it ended."""
    claim = await database(_claim, run_id)
    if claim is None:
        return
    _log.info("run #%d of session #%d (%s) started by %s", run_id, claim.session_id, claim.tenant, worker)
    try:
        outcome = await _execute(claim, timeout)
    except Exception as exc:  # the worker's own part failed (spawn, vault, disk): say so on the run
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


def run_account(tenant: str) -> pwd.struct_passwd | None:
    """The unix account a run of ``tenant`` executes as: ``jupyter-<tenant>`` when this worker
    runs as root and the account exists, else None (the worker's own account; development)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(f"jupyter-{tenant}")
    except KeyError:
        return None


def _claim(run_id: int) -> Claim | None:
    with store.owner_session() as db:
        run = db.get(NotebookRun, run_id, with_for_update=True)
        if run is None or run.status != "queued":
            return None  # already taken (a job delivered twice) or abandoned
        live = db.get(LiveNotebook, run.live_notebook_id)
        trading = db.get(TradingSession, live.session_id)
        tenant = db.get(Tenant, run.tenant_id)
        reason = (f"the live notebook is {live.status}" if live.status != "active" else
                  f"session #{trading.id} is {trading.status}" if trading.status != "running" else
                  f"tenant {tenant.name!r} was removed" if tenant.removed_at else None)
        if reason:
            run.status, run.error, run.finished_at = "skipped", f"skipped: {reason}", func.clock_timestamp()
            return None
        run.status, run.started_at = "running", func.clock_timestamp()
        return Claim(run.id, trading.id, tenant.name, trading.exchange_account_id, run.scheduled_for,
                     live.content)


def _record(run_id: int, outcome: Outcome) -> None:
    with store.owner_session() as db:
        db.execute(update(NotebookRun).where(NotebookRun.id == run_id, NotebookRun.status == "running")
                   .values(status=outcome.status, error=outcome.error, failing_cell=outcome.failing_cell,
                           output_path=outcome.output_path, timings=outcome.timings,
                           finished_at=func.clock_timestamp()))


async def _execute(claim: Claim, timeout: float) -> Outcome:
    account = run_account(claim.tenant)
    owner = (account.pw_uid, account.pw_gid) if account else None
    folder = Path(tempfile.mkdtemp(prefix=f"workbench-run-{claim.run_id}-"))
    handoff: KeyHandoff | None = None
    try:
        env = await database(_environment, claim, folder, owner)
        redactions: list[tuple[str, str]] = []
        if claim.account_id is not None:
            keys = await database(_keys_of, claim)
            handoff = KeyHandoff(keys, folder, *(owner or (None, None)))
            await handoff.start()
            env.update(handoff.environment())
            redactions = [*keys.redactions(), (handoff.token, "***")]
        source, output = folder / "input.ipynb", folder / "output.ipynb"
        source.write_text(claim.content, encoding="utf-8")
        if owner:
            for path in (folder, source, *folder.rglob("*")):
                os.chown(path, *owner)
        parameters = {"session_id": claim.session_id, "run_id": claim.run_id,
                      "scheduled_for": claim.scheduled_for.isoformat()}
        spawned = time.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workbench.scheduler._runner", str(source), str(output), json.dumps(parameters),
            env=env, cwd=folder, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            **({"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}))
        try:
            log, _ = await asyncio.wait_for(process.communicate(), timeout)
        except asyncio.TimeoutError:
            _kill(process.pid)
            await process.wait()
            return Outcome("failed", f"timed out: the run took longer than {timeout:g} s and was killed")
        except asyncio.CancelledError:  # the worker is shutting down: the run must not outlive it
            _kill(process.pid)
            raise
        return _outcome(claim, output, _redact(log.decode(errors="replace"), redactions),
                        process.returncode, spawned, redactions)
    finally:
        if handoff is not None:
            await handoff.close()
        shutil.rmtree(folder, ignore_errors=True)


def _environment(claim: Claim, folder: Path, owner: tuple[int, int] | None) -> dict[str, str]:
    """The run process's whole environment (an allow-list: nothing else is inherited)."""
    tenant_home = home() / "runs" / claim.tenant / "home"
    tenant_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if owner:
        os.chown(tenant_home, *owner)
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-workbench-run.py").write_text(_STARTUP)
    env = {name: value for name, value in os.environ.items() if name in _PASSED_ENV or name.startswith("LC_")}
    env.update({
        "HOME": str(tenant_home),
        "WORKBENCH_HOME": str(tenant_home),
        store.TENANT_URL_ENV: store.tenant_url(claim.tenant),
        "IPYTHONDIR": str(folder / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTER_CONFIG_DIR": str(folder / "jupyter"),
        "MPLBACKEND": "Agg",
        SESSION_ENV: str(claim.session_id),
        PARENT_ENV: str(os.getpid()),
    })
    return env


def _keys_of(claim: Claim) -> Any:
    from workbench.vault import LocalVault

    return LocalVault(tenant=claim.tenant).keys_for(claim.account_id)


def _outcome(claim: Claim, output: Path, log: str, returncode: int, spawned: float,
             redactions: list[tuple[str, str]]) -> Outcome:
    finished = time.time()
    notebook = None
    saved = None
    if output.exists():
        text = _redact(output.read_text(encoding="utf-8"), redactions)
        saved = _save(claim, text)
        notebook = nbformat.reads(text, as_version=4)
    timings = _timings(notebook, _marks(log), spawned, finished)
    if returncode == 0 and notebook is not None:
        return Outcome("succeeded", output_path=saved, timings=timings)
    cell, error = _failing_cell(notebook) if notebook is not None else (None, None)
    if error is None:
        tail = "\n".join(line for line in log.splitlines() if not line.startswith("{"))[-2000:]
        error = f"the run process exited with status {returncode}:\n{tail}".rstrip()
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
    return [cell for cell in notebook.cells if cell.cell_type == "code"
            and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]


def _failing_cell(notebook: Any) -> tuple[int | None, str | None]:
    for number, cell in enumerate(_code_cells(notebook), 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                trace = _ANSI.sub("", "\n".join(out.get("traceback", []))).strip().splitlines()
                detail = "\n".join(trace[-_TRACEBACK_LINES:])
                return number, f"cell {number}: {out['ename']}: {out['evalue']}\n{detail}"
    return None, None


def _marks(log: str) -> dict[str, float]:
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {}


def _timings(notebook: Any, marks: dict[str, float], spawned: float, finished: float) -> dict[str, Any]:
    """Seconds per phase: process start and papermill import, kernel start (to the first
    cell), each code cell, and cells summed by tag (e.g. ``imports``, ``tick``)."""
    timings: dict[str, Any] = {"total": round(finished - spawned, 3)}
    if "papermill_ready" in marks:
        timings["process"] = round(marks["papermill_ready"] - spawned, 3)
    cells = [cell for cell in _code_cells(notebook)] if notebook is not None else []
    meta = [cell.get("metadata", {}).get("papermill", {}) for cell in cells]
    starts = [datetime.fromisoformat(m["start_time"]).timestamp() for m in meta if m.get("start_time")]
    if starts and "papermill_ready" in marks:
        timings["kernel_start"] = round(min(starts) - marks["papermill_ready"], 3)
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


def _kill(pid: int) -> None:
    """Kill the run process and everything it started (its kernel runs in a session of its own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
