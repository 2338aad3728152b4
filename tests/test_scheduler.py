"""Promotion, the dispatcher and the workers, against real PostgreSQL, procrastinate and papermill.

Fast tests call the dispatcher in-process. Worker tests start real ``workbench worker``
processes that execute notebooks with papermill in fresh kernels; a promoted test notebook
does a small piece of tenant work (one equity snapshot written through ``store.session()``,
i.e. as the tenant's role) so its runs are visible in the database.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import psutil
import pytest
from sqlalchemy import func, select, text, update

from workbench import store
from workbench.cli import main
from workbench.errors import SchedulerError, VaultError
from workbench.scheduler import demote, live_notebooks, parse_schedule, pause, promote, resume, run_now, stop
from workbench.scheduler._dispatch import demand, dispatch_due
from workbench.scheduler._execute import _read_output, execute_run, tenant_setup
from workbench.scheduler._keys import KeyHandoff, RunVault
from workbench.scheduler._pool import KernelPool
from workbench.store.models import EquitySnapshot, LiveNotebook, NotebookRun, Strategy, TradingSession
from workbench.vault import ExchangeKeys, LocalVault, Secret

UTC = UTC
EVERY_SECOND = "* * * * * *"
_KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
_PARAMETERS = "session_id = 0\nrun_id = 0\nscheduled_for = ''"
_SNAPSHOT = """\
import os
import pandas as pd
from workbench import store
from workbench.store.models import EquitySnapshot
with store.session() as s:
    s.add(EquitySnapshot(session_id=session_id, ts=pd.Timestamp.now(tz="UTC"), balance=1, equity=1))
"""


# --- helpers ----------------------------------------------------------------------------------


def _tenant(prefix: str = "t") -> str:
    name = f"{prefix}{secrets.token_hex(3)}"
    store.create_tenant(name)
    return name


def _trading_session(tenant: str, status: str = "running", account: int | None = None) -> int:
    with store.owner_session() as s:
        tenant_id = s.scalar(select(store.Tenant.id).where(store.Tenant.name == tenant))
        strategy = Strategy(tenant_id=tenant_id, name=f"s{secrets.token_hex(3)}", template="channel", params={})
        s.add(strategy)
        s.flush()
        trading = TradingSession(
            tenant_id=tenant_id,
            strategy_id=strategy.id,
            exchange="paper",
            symbol="BTC/USD",
            status=status,
            exchange_account_id=account,
        )
        s.add(trading)
        s.flush()
        return trading.id


def _notebook(folder: Path, *cells: str, parameters: str | None = _PARAMETERS, name: str = "live.ipynb") -> Path:
    nb = nbformat.v4.new_notebook(metadata=_KERNELSPEC)
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path = folder / name
    nbformat.write(nb, path)
    return path


@contextmanager
def _as(tenant: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process acts as ``tenant`` (as its notebook server would)."""
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(tenant))
    yield
    monkeypatch.delenv(store.TENANT_URL_ENV)


def _runs(session_id: int) -> list[NotebookRun]:
    with store.owner_session() as s:
        return list(
            s.scalars(
                select(NotebookRun)
                .join(LiveNotebook, LiveNotebook.id == NotebookRun.live_notebook_id)
                .where(LiveNotebook.session_id == session_id)
                .order_by(NotebookRun.id)
            )
        )


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _finished(session_id: int, count: int, status: str = "succeeded"):
    return lambda: len([r for r in _runs(session_id) if r.status == status]) >= count


@contextmanager
def _worker(log: Path, *options: str, env: dict | None = None) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.cli",
                "worker",
                "--verbose",
                "--dispatch-interval",
                "0.2",
                "--heartbeat",
                "0.5",
                *options,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(autouse=True)
def _nothing_stays_live(request):
    """Tests share a database: what one promoted must not keep running in the next one's workers."""
    yield
    if {"database", "embedded_only"} & set(request.fixturenames):
        with store.owner_session() as s:
            s.execute(
                update(LiveNotebook)
                .where(LiveNotebook.status.in_(("active", "paused")))
                .values(status="stopped", next_run_at=None)
            )
            s.execute(text("SET LOCAL search_path TO procrastinate, public"))  # for procrastinate's triggers
            s.execute(text("DELETE FROM procrastinate_jobs WHERE status = 'todo'"))


@pytest.fixture
def embedded_only(database):
    """Worker tests spawn processes for a while: they run against the embedded server (the default)."""
    if database.server.backend != "embedded":
        pytest.skip("worker process tests run against the embedded server only")
    return database


# --- schedules --------------------------------------------------------------------------------


def test_candle_schedule_fires_after_each_close_and_coalesces_missed_candles():
    schedule = parse_schedule("candle:5m")
    at = datetime(2026, 1, 1, 12, 3, 0, tzinfo=UTC)
    assert schedule.next_after(at) == datetime(2026, 1, 1, 12, 5, 3, tzinfo=UTC)
    assert schedule.next_after(datetime(2026, 1, 1, 12, 5, 3, tzinfo=UTC)) == datetime(
        2026, 1, 1, 12, 10, 3, tzinfo=UTC
    )
    # down from 12:00 to 14:07: one run, for the last closed candle, not 26
    assert schedule.latest(datetime(2026, 1, 1, 14, 7, 0, tzinfo=UTC)) == datetime(2026, 1, 1, 14, 5, 3, tzinfo=UTC)
    assert parse_schedule("candle:1h+10s").next_after(at) == datetime(2026, 1, 1, 13, 0, 10, tzinfo=UTC)


def test_cron_schedule_with_and_without_seconds():
    schedule = parse_schedule("*/15 * * * *")
    at = datetime(2026, 1, 1, 12, 15, 0, tzinfo=UTC)
    assert schedule.latest(at) == at
    assert schedule.next_after(at) == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert parse_schedule("* * * * * */10").next_after(at) == datetime(2026, 1, 1, 12, 15, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("candle:5x", "not a candle schedule"),
        ("candle:1m+90s", "must be shorter than the timeframe"),
        ("every five minutes", "neither a candle schedule"),
        ("61 * * * *", "neither a candle schedule"),
    ],
)
def test_unparsable_schedules_are_refused(text, message):
    with pytest.raises(SchedulerError, match=message):
        parse_schedule(text)


# --- promotion --------------------------------------------------------------------------------


def test_promotion_freezes_a_versioned_copy(database, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    path = _notebook(tmp_path, "x = 1")
    with _as(alice, monkeypatch):
        first = promote(path, session_id, "candle:5m")
        path.write_text(path.read_text().replace("x = 1", "x = 2"))  # edits change nothing ...
        with store.session() as s:
            assert "x = 1" in s.get(LiveNotebook, first.id).content
        second = promote(path, session_id, "candle:1h")  # ... until promoted again
        with store.session() as s:
            versions = {
                live.version: live
                for live in s.scalars(select(LiveNotebook).where(LiveNotebook.session_id == session_id))
            }
    assert (first.version, second.version) == (1, 2)
    assert versions[1].status == "stopped" and versions[1].next_run_at is None
    assert versions[2].status == "active" and "x = 2" in versions[2].content
    assert versions[2].next_run_at > versions[2].created_at
    assert (versions[2].next_run_at.minute, versions[2].next_run_at.second) == (0, 3)  # an hour's close + 3 s
    assert versions[2].tenant_id == versions[1].tenant_id


def test_bad_promotions_are_refused_with_clear_messages(database, tmp_path, monkeypatch):
    alice, bob = _tenant("alice"), _tenant("bob")
    mine, theirs = _trading_session(alice), _trading_session(bob)
    broken = _trading_session(alice, status="error")
    good = _notebook(tmp_path, "x = 1")
    with _as(alice, monkeypatch):
        with pytest.raises(SchedulerError, match=r"notebook 'nowhere.ipynb' does not exist"):
            promote("nowhere.ipynb", mine, "candle:5m")
        with pytest.raises(SchedulerError, match="has no cell tagged 'parameters'"):
            promote(_notebook(tmp_path, "x = 1", parameters=None, name="plain.ipynb"), mine, "candle:5m")
        with pytest.raises(SchedulerError, match="does not define run_id, scheduled_for"):
            promote(_notebook(tmp_path, parameters="session_id = 0", name="few.ipynb"), mine, "candle:5m")
        with pytest.raises(SchedulerError, match=f"^no session #{theirs}$"):  # bob's: invisible to alice
            promote(good, theirs, "candle:5m")
        with pytest.raises(SchedulerError, match=f"^no session #{theirs + 1000}$"):
            promote(good, theirs + 1000, "candle:5m")
        with pytest.raises(SchedulerError, match=f"session #{broken} is in error"):
            promote(good, broken, "candle:5m")
        with pytest.raises(SchedulerError, match="neither a candle schedule .* nor a valid cron"):
            promote(good, mine, "every 5 minutes")
        with store.session() as s:
            assert s.scalar(select(func.count()).select_from(LiveNotebook)) == 0


def test_pause_resume_demote_stop_and_the_live_list(database, tmp_path, monkeypatch, capsys):
    alice = _tenant("alice")
    one, two = _trading_session(alice), _trading_session(alice)
    path = _notebook(tmp_path, "x = 1")
    with _as(alice, monkeypatch):
        promote(path, one, "candle:5m")
        promote(path, two, "*/10 * * * *")
        assert pause(one).status == "paused" and pause(one).next_run_at is None
        resumed = resume(one)
        assert resumed.status == "active" and resumed.next_run_at > datetime.now(UTC)
        assert run_now(one).next_run_at <= datetime.now(UTC)  # due at the next dispatcher pass
        assert {(r.session_id, r.status) for r in live_notebooks()} == {(one, "active"), (two, "active")}
        assert main(["live", "list"]) == 0  # as the tenant: its own live notebooks
        listing = capsys.readouterr().out
        assert f"#{one}" in listing and "candle:5m" in listing and "*/10 * * * *" in listing
        assert demote(two).status == "stopped"
        stop(one)
        with store.session() as s:
            assert s.get(TradingSession, one).status == "stopped"
            assert s.get(TradingSession, two).status == "running"  # demote leaves the session alone
        assert live_notebooks() == []
        with pytest.raises(SchedulerError, match=f"session #{one} has no live notebook"):
            pause(one)
        assert main(["live", "pause", str(one)]) == 2
        assert f"session #{one} has no live notebook" in capsys.readouterr().err


# --- dispatcher --------------------------------------------------------------------------------


def _promote_as(tenant: str, path: Path, session_id: int, schedule: str, monkeypatch) -> LiveNotebook:
    with _as(tenant, monkeypatch):
        return promote(path, session_id, schedule)


def _queue_jobs(run_ids: list[int]) -> list[tuple]:
    with store.owner_session() as s:
        return s.execute(
            text(
                "SELECT id, status::text, lock, queueing_lock, args FROM procrastinate.procrastinate_jobs "
                "WHERE (args->>'run_id')::bigint = ANY(:ids) ORDER BY id"
            ),
            {"ids": run_ids},
        ).all()


def test_dispatch_queues_one_run_and_job_per_due_time_and_coalesces_downtime(database, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    live = _promote_as(alice, _notebook(tmp_path, "x = 1"), session_id, "candle:5m", monkeypatch)
    now = datetime.now(UTC)
    with store.owner_session() as s:  # everything was down for three hours
        s.get(LiveNotebook, live.id).next_run_at = now - timedelta(hours=3)
    queued = [run for run in dispatch_due(now) if run in {r.id for r in _runs(session_id)}]
    assert len(queued) == 1 and dispatch_due(now) == []
    (run,) = _runs(session_id)
    schedule = parse_schedule("candle:5m")
    assert run.scheduled_for == schedule.latest(now) and run.status == "queued"
    (job,) = _queue_jobs([run.id])
    assert job[0] == run.job_id and job[1] == "todo" and job[2] == job[3] == f"session:{session_id}"
    with store.owner_session() as s:
        assert s.get(LiveNotebook, live.id).next_run_at == schedule.next_after(now)
    # due again while the first run still waits to start: no second run, no second job
    later = schedule.next_after(now) + timedelta(seconds=1)
    assert dispatch_due(later) == []
    assert [r.id for r in _runs(session_id)] == [run.id]
    with store.owner_session() as s:
        assert s.get(LiveNotebook, live.id).next_run_at == schedule.next_after(later)


def test_dispatch_skips_sessions_that_are_not_running(database, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice, status="paused")
    live = _promote_as(alice, _notebook(tmp_path, "x = 1"), session_id, "candle:1m", monkeypatch)
    later = live.next_run_at + timedelta(seconds=1)
    dispatch_due(later)
    assert _runs(session_id) == []
    with store.owner_session() as s:
        assert s.get(LiveNotebook, live.id).next_run_at > later  # the schedule moved on: no burst on start


def test_dispatch_keeps_running_a_stopped_session_whose_wind_down_is_due(database, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice, status="stopped")
    live = _promote_as(alice, _notebook(tmp_path, "x = 1"), session_id, "candle:1m", monkeypatch)
    with store.owner_session() as s:  # its stop could not reach the exchange: each run tries again
        s.get(TradingSession, session_id).wind_down_pending = "protect"
    dispatch_due(live.next_run_at + timedelta(seconds=1))
    assert len(_runs(session_id)) == 1
    assert alice in [t for t, _ in demand().tenants]
    with store.owner_session() as s:
        s.get(TradingSession, session_id).wind_down_pending = None  # secured: the runs end
    dispatch_due(live.next_run_at + timedelta(minutes=5))
    assert len(_runs(session_id)) == 1


def test_demand_counts_live_notebooks_of_running_sessions_soonest_due_first(database, tmp_path, monkeypatch):
    alice, bob = _tenant("alice"), _tenant("bob")
    path = _notebook(tmp_path, "x = 1")
    now = datetime.now(UTC)
    due = {}
    for tenant, minutes in ((alice, 60), (alice, 30), (bob, 5), (bob, 1)):
        session_id = _trading_session(tenant)
        due[session_id] = now + timedelta(minutes=minutes)
        live = _promote_as(tenant, path, session_id, "candle:1h", monkeypatch)
        with store.owner_session() as s:
            s.get(LiveNotebook, live.id).next_run_at = due[session_id]
    with store.owner_session() as s:  # bob's soonest session is paused: it needs no kernel
        s.get(TradingSession, min(due, key=due.get)).status = "paused"
    wanted = demand()
    assert [(t, n) for t, n in wanted.tenants if t in (alice, bob)] == [(bob, 1), (alice, 2)]
    assert wanted.next_due <= now + timedelta(minutes=5)


def test_tenants_cannot_reach_the_job_queue(database, monkeypatch):
    alice = _tenant("alice")
    with _as(alice, monkeypatch), store.session() as s, pytest.raises(Exception, match="permission denied"):
        s.execute(text("SELECT count(*) FROM procrastinate.procrastinate_jobs"))


# --- key hand-off ------------------------------------------------------------------------------


def test_keys_are_served_once_to_the_token_holder(tmp_path):
    keys = ExchangeKeys(7, "binance", Secret("K" * 24), Secret("S" * 40))

    async def scenario():
        good = KeyHandoff(keys, tmp_path)
        await good.start()
        assert oct(good.path.stat().st_mode & 0o777) == "0o600"
        vault = RunVault(str(good.path), good.token, 7, "3")
        got = await asyncio.to_thread(vault.keys_for, 7)
        assert got.api_key.reveal() == "K" * 24 and got.secret.reveal() == "S" * 40
        assert (await asyncio.to_thread(vault.keys_for, 7)) is got  # cached; never asked twice
        assert not good.path.exists()  # served once: the socket is gone
        with pytest.raises(VaultError, match="only the keys of its own account 7"):
            vault.keys_for(8)
        await good.close()
        wrong = KeyHandoff(keys, tmp_path)
        await wrong.start()
        with pytest.raises(VaultError, match="refused the keys"):
            await asyncio.to_thread(RunVault(str(wrong.path), "not-the-token", 7, "3").keys_for, 7)
        with pytest.raises(VaultError, match="did not hand over"):  # one attempt only
            await asyncio.to_thread(RunVault(str(wrong.path), wrong.token, 7, "3").keys_for, 7)
        await wrong.close()

    asyncio.run(scenario())
    with pytest.raises(VaultError, match="trades on paper"):
        RunVault(None, None, None, "3").keys_for(1)
    with pytest.raises(VaultError, match="not available inside a live run"):
        RunVault(None, None, None, "3").accounts()


# --- workers -----------------------------------------------------------------------------------

_ENV_PROBE = """\
import json
from sqlalchemy import text
with store.session() as s:
    role = s.execute(text("SELECT current_user")).scalar()
print(json.dumps({"role": role, "uid": os.getuid(), "env": sorted(os.environ)}))
"""


@pytest.mark.slow
def test_a_worker_runs_the_frozen_notebook_as_the_tenant(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    path = _notebook(tmp_path, _SNAPSHOT, _ENV_PROBE)
    _promote_as(alice, path, session_id, EVERY_SECOND, monkeypatch)
    path.write_text("edited after promotion: not a notebook any more")
    with _worker(tmp_path / "worker.log"):
        _wait(_finished(session_id, 2), 60, "two succeeded runs")
    done = [r for r in _runs(session_id) if r.status == "succeeded"]
    for run in done:
        assert run.started_at >= run.scheduled_for and run.finished_at > run.started_at
        assert {"total", "kernel_start", "cells"} <= set(run.timings)
    with store.owner_session() as s:
        snapshots = s.scalars(select(EquitySnapshot).where(EquitySnapshot.session_id == session_id)).all()
        tenant_id = s.scalar(select(store.Tenant.id).where(store.Tenant.name == alice))
    assert len(snapshots) >= 2 and {snap.tenant_id for snap in snapshots} == {tenant_id}
    output = nbformat.read(done[0].output_path, as_version=4)
    probe = json.loads(output.cells[-1].outputs[0]["text"])
    assert probe["role"].endswith(alice)  # connected as the tenant's role, not the owner
    assert not {
        "WORKBENCH_DATABASE_URL",
        "DATABASE_URL",
        "WORKBENCH_MASTER_KEY",
        "WORKBENCH_MASTER_KEY_FILE",
        "WORKBENCH_DB_ROLE_SECRET",
        "WORKBENCH_RUN_KEYS_TOKEN",
    } & set(probe["env"])
    injected = next(c for c in output.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f"run_id = {done[0].id}" in injected.source and f"session_id = {session_id}" in injected.source


@pytest.mark.slow
def test_two_workers_execute_each_run_exactly_once(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    sessions = [_trading_session(alice) for _ in range(4)]
    path = _notebook(tmp_path, _SNAPSHOT)
    for session_id in sessions:
        _promote_as(alice, path, session_id, EVERY_SECOND, monkeypatch)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with _worker(logs[0], "--concurrency", "2"), _worker(logs[1], "--concurrency", "2"):
        _wait(lambda: all(_finished(s, 2)() for s in sessions), 120, "two runs of each session")
        with _as(alice, monkeypatch):
            for session_id in sessions:
                demote(session_id)
        _wait(
            lambda: not any(r.status in ("queued", "running") for s in sessions for r in _runs(s)),
            60,
            "the runs in progress",
        )
    with store.owner_session() as s:
        for session_id in sessions:
            succeeded = [r for r in _runs(session_id) if r.status == "succeeded"]
            rows = s.scalar(
                select(func.count()).select_from(EquitySnapshot).where(EquitySnapshot.session_id == session_id)
            )
            assert rows == len(succeeded)  # one snapshot per run: none ran twice
            assert len({r.scheduled_for for r in _runs(session_id)}) == len(_runs(session_id))
    started = [log.read_text().count("started by") for log in logs]
    assert all(started), f"both workers should have run something: {started}"


@pytest.mark.slow
def test_a_failing_notebook_is_recorded_with_its_cell_and_not_retried(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    path = _notebook(tmp_path, _SNAPSHOT, "raise ValueError('the strategy refused: spread too wide')")
    _promote_as(alice, path, session_id, EVERY_SECOND, monkeypatch)
    with _worker(tmp_path / "worker.log"):
        _wait(_finished(session_id, 2, "failed"), 60, "two failed runs")
    failed = [r for r in _runs(session_id) if r.status == "failed"]
    assert failed[0].failing_cell == 3  # code cells counted from the parameters cell, papermill's own left out
    assert failed[0].error.startswith("cell 3: ValueError: the strategy refused: spread too wide")
    assert Path(failed[0].output_path).exists()
    with store.owner_session() as s:  # each failed run ran once: one snapshot each, no retries
        assert s.scalar(text("SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE attempts > 1")) == 0
    with _as(alice, monkeypatch), store.session() as s:
        assert s.get(TradingSession, session_id).status == "running"


def _alive(pids) -> list[int]:
    """Those of ``pids`` still running (a zombie has exited)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


_PID_PROBE = "import os, pathlib\npathlib.Path({path!r}).write_text(f'{{os.getpid()}} {{os.getppid()}}')"


@pytest.mark.slow
def test_a_killed_worker_leaves_its_run_failed_and_the_session_runs_on(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    pids = tmp_path / "kernel.pid"
    path = _notebook(tmp_path, _SNAPSHOT, _PID_PROBE.format(path=str(pids)), "import time\ntime.sleep(600)")
    _promote_as(alice, path, session_id, EVERY_SECOND, monkeypatch)
    with _worker(tmp_path / "a.log", "--stalled-after", "3") as first:
        running = _wait(lambda: [r for r in _runs(session_id) if r.status == "running"], 60, "a running run")
        _wait(pids.exists, 30, "the run's kernel")
        kernel, slot = map(int, pids.read_text().split())
        spawned = _descendants(first.pid)  # the zygote, the run's slot and kernel, warm kernels
        assert {kernel, slot} <= set(spawned)
        folder = Path(psutil.Process(kernel).cwd()).parent  # the run's notebook, its output so far
        first.kill()
        first.wait()
    # the run, its kernel, the zygote and the warm kernels go with the worker: no orphan keeps trading
    _wait(lambda: not _alive(spawned), 10, "the killed worker's processes to exit")
    assert not folder.exists()
    with store.owner_session() as s:  # the next run must not sleep, or it would be abandoned too
        s.execute(
            update(LiveNotebook)
            .where(LiveNotebook.session_id == session_id, LiveNotebook.status == "active")
            .values(content=nbformat.writes(nbformat.read(_notebook(tmp_path, _SNAPSHOT, name="quick.ipynb"), 4)))
        )
    with _worker(tmp_path / "b.log", "--stalled-after", "3"):
        _wait(
            lambda: next(r for r in _runs(session_id) if r.id == running[0].id).status == "failed",
            30,
            "the abandoned run to be marked failed",
        )
        _wait(_finished(session_id, 1), 60, "a run after the abandoned one")
    abandoned = next(r for r in _runs(session_id) if r.id == running[0].id)
    assert abandoned.error.startswith("abandoned: the worker running it stopped")
    assert not any(r.status in ("queued", "running") for r in _runs(session_id) if r.id <= running[0].id)


# --- warm kernels ------------------------------------------------------------------------------

_KERNEL_PROBE = """\
import json, os
from sqlalchemy import text
from workbench import store
with store.session() as s:
    role = s.execute(text("SELECT current_user")).scalar()
print(json.dumps({"kernel": os.getpid(), "slot": os.getppid(), "uid": os.getuid(), "role": role,
                  "names": sorted(name for name in globals() if not name.startswith("_"))}))
"""


@asynccontextmanager
async def _kernel_pool(tenant: str, size: int = 1) -> AsyncIterator[KernelPool]:
    """A worker's pool keeping ``size`` kernels warm for ``tenant``; everything killed after."""
    pool = KernelPool(size, tenant_setup)
    await pool.start()
    pool.want([(tenant, size)])
    try:
        yield pool
    finally:
        await pool.close()


async def _warm(pool: KernelPool, count: int = 1, unlike: set[int] = frozenset()) -> list[tuple[str, int, int]]:
    """The pool's warm (tenant, slot pid, kernel pid), once ``count`` of them are ready and not in ``unlike``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        warm = [k for k in pool.kernels()["warm"] if k[2] not in unlike]
        if len(warm) >= count:
            return warm
        await asyncio.sleep(0.1)
    pytest.fail(f"no {count} warm kernels after 60 s: {pool.kernels()}")


def _queued_run(live: LiveNotebook) -> int:
    """A run of ``live`` as the dispatcher leaves it (queued), without its job."""
    with store.owner_session() as s:
        run = NotebookRun(tenant_id=live.tenant_id, live_notebook_id=live.id, scheduled_for=datetime.now(UTC))
        s.add(run)
        s.flush()
        return run.id


def _run(run_id: int) -> NotebookRun:
    with store.owner_session() as s:
        return s.get(NotebookRun, run_id)


def _probe(run: NotebookRun) -> dict:
    output = nbformat.read(run.output_path, as_version=4)
    return json.loads(next(o["text"] for o in output.cells[-1].outputs if o.get("name") == "stdout"))


@pytest.mark.slow
def test_a_warm_kernel_serves_one_run_as_its_tenant_and_is_replaced(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    live = _promote_as(alice, _notebook(tmp_path, _KERNEL_PROBE), session_id, "candle:1h", monkeypatch)

    async def scenario():
        async with _kernel_pool(alice) as pool:
            ((_, slot, kernel),) = await _warm(pool)
            first = _queued_run(live)
            await execute_run(first, "test", pool)
            run = _run(first)
            assert run.status == "succeeded", run.error
            assert run.timings["warm"] is True and run.timings["kernel_wait"] < 0.5
            probe = _probe(run)
            assert (probe["kernel"], probe["slot"]) == (kernel, slot)  # the run took the warm kernel
            assert probe["role"].endswith(alice) and probe["uid"] == os.getuid()
            # a fresh namespace: IPython's own names and the notebook's, nothing of the zygote or the arming
            assert set(probe["names"]) == {
                "In",
                "Out",
                "exit",
                "get_ipython",
                "open",
                "quit",
                "session_id",
                "run_id",
                "scheduled_for",
                "json",
                "os",
                "text",
                "store",
                "s",
                "role",
            }
            assert not _alive([slot, kernel])  # used once, then killed
            ((_, new_slot, new_kernel),) = await _warm(pool, unlike={kernel})  # and replaced
            second = _queued_run(live)
            await execute_run(second, "test", pool)
            assert _probe(_run(second))["kernel"] == new_kernel
            zygote = pool.kernels()["zygote"]
            assert not {
                "DATABASE_URL",
                "WORKBENCH_DATABASE_URL",
                "WORKBENCH_TENANT_DATABASE_URL",
                "WORKBENCH_DB_ROLE_SECRET",
                "WORKBENCH_MASTER_KEY",
                "WORKBENCH_MASTER_KEY_FILE",
                "WORKBENCH_HOME",
            } & set(psutil.Process(zygote).environ())  # it holds no secret
            spawned = [zygote, *_descendants(zygote)]
        assert not _alive(spawned)  # closing the pool (the worker stopping) kills everything it started

    asyncio.run(scenario())


@pytest.mark.slow
def test_lost_kernels_are_replaced_and_crashed_runs_recorded(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    live = _promote_as(alice, _notebook(tmp_path, _KERNEL_PROBE), session_id, "candle:1h", monkeypatch)

    def content(*cells: str) -> None:
        with store.owner_session() as s:
            s.get(LiveNotebook, live.id).content = nbformat.writes(nbformat.read(_notebook(tmp_path, *cells), 4))

    async def scenario():
        async with _kernel_pool(alice) as pool:
            ((_, _, kernel),) = await _warm(pool)
            os.kill(kernel, signal.SIGKILL)  # a warm kernel dies while it waits: the pool warms another
            ((_, _, kernel),) = await _warm(pool, unlike={kernel})
            os.kill(kernel, signal.SIGKILL)  # and one dies just as a run takes it: the run takes another
            run_id = _queued_run(live)
            await execute_run(run_id, "test", pool)
            run = _run(run_id)
            assert run.status == "succeeded", run.error
            assert _probe(run)["kernel"] != kernel
            content("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")  # the kernel crashes mid-run
            run_id = _queued_run(live)
            await execute_run(run_id, "test", pool)
            run = _run(run_id)
            assert run.status == "failed" and "DeadKernelError" in run.error, run.error
            content("import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(600)")  # its slot dies
            run_id = _queued_run(live)
            await execute_run(run_id, "test", pool, timeout=60)
            run = _run(run_id)
            assert run.status == "failed" and run.error.startswith(
                "the run failed outside its cells: the run's process died"
            ), run.error
            content(_KERNEL_PROBE)  # the pool is still fine
            run_id = _queued_run(live)
            await execute_run(run_id, "test", pool)
            assert _run(run_id).status == "succeeded"
            zygote = pool.kernels()["zygote"]
            os.kill(zygote, signal.SIGKILL)  # even without its zygote: the next kernel comes from a new one
            await _warm(pool)
            for _ in range(2):
                run_id = _queued_run(live)
                await execute_run(run_id, "test", pool)
                assert _run(run_id).status == "succeeded"
            assert pool.kernels()["zygote"] != zygote

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_stopped_worker_leaves_no_process_behind(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    sessions = [_trading_session(alice) for _ in range(2)]
    for session_id in sessions:
        _promote_as(alice, _notebook(tmp_path, "x = 1"), session_id, "candle:1h", monkeypatch)
    with _worker(tmp_path / "worker.log", "--warm-kernels", "2") as worker:
        # the zygote, and a slot and its kernel for each live notebook
        spawned = _wait(lambda: len(_descendants(worker.pid)) >= 5 and _descendants(worker.pid), 60, "warm kernels")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    _wait(lambda: not _alive(spawned), 10, "the worker's processes to exit")


@pytest.mark.slow
def test_a_tenant_whose_kernels_cannot_start_gets_an_error_and_a_pause():
    calls = []

    async def setup(tenant: str):
        calls.append(tenant)
        raise SchedulerError(f"tenant {tenant!r} has no database role")

    async def scenario():
        pool = KernelPool(2, setup)
        await pool.start()
        try:
            pool.want([("ghost", 2)])
            await asyncio.sleep(0.5)
            assert calls == ["ghost", "ghost"]
            for _ in range(3):  # the dispatcher asks every second: no retry storm
                pool.want([("ghost", 2)])
                await asyncio.sleep(0.1)
            assert len(calls) == 2 and pool.kernels()["warming"] == 0
            with pytest.raises(SchedulerError, match="has no database role"):  # a run still gets the error
                await pool.acquire("ghost")
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_the_output_notebook_is_read_only_as_the_runs_own_regular_file(tmp_path):
    output = tmp_path / "output.ipynb"
    output.write_text("{}")
    assert _read_output(output, os.getuid()) == "{}"
    assert _read_output(output, os.getuid() + 1) is None  # someone else's file
    secret = tmp_path / "secret"
    secret.write_text("not the tenant's")
    output.unlink()
    output.symlink_to(secret)
    assert _read_output(output, os.getuid()) is None  # a symlink planted in the tenant's work folder
    assert _read_output(tmp_path / "missing.ipynb", os.getuid()) is None


@pytest.mark.slow
def test_the_worker_refuses_bad_pool_settings(capsys):
    assert main(["worker", "--concurrency", "0"]) == 2
    assert main(["worker", "--warm-kernels", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--concurrency must be at least 1, not 0" in err and "--warm-kernels must be 0 or more, not -1" in err


@pytest.mark.slow
def test_runs_survive_a_database_restart(server_folder, tmp_path, monkeypatch):
    from workbench.store._server import EmbeddedServer

    server = EmbeddedServer(server_folder / "postgres")
    server.start()
    try:
        monkeypatch.setenv("WORKBENCH_DATABASE_URL", server.url())
        store.dispose()
        store.upgrade()
        alice = _tenant("alice")
        session_id = _trading_session(alice)
        _promote_as(alice, _notebook(tmp_path, _SNAPSHOT), session_id, EVERY_SECOND, monkeypatch)
        with _worker(tmp_path / "worker.log") as worker:
            _wait(_finished(session_id, 1), 60, "a run before the restart")
            server.stop()
            time.sleep(3)
            server.start()
            store.dispose()
            before = len([r for r in _runs(session_id) if r.status == "succeeded"])
            _wait(_finished(session_id, before + 2), 90, "runs after the restart")
            assert worker.poll() is None, "the worker exited instead of reconnecting"
            with _as(alice, monkeypatch):
                demote(session_id)
            _wait(
                lambda: not any(r.status in ("queued", "running") for r in _runs(session_id)),
                60,
                "no run left in progress",
            )
        statuses = {r.status for r in _runs(session_id)}
        assert statuses <= {"succeeded", "failed", "skipped"}
    finally:
        store.dispose()
        server.stop()


@pytest.mark.slow
def test_exchange_keys_reach_the_run_in_memory_and_leak_nowhere(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    api_key, secret = f"CANARYKEY{secrets.token_hex(12)}", f"CANARYSECRET{secrets.token_hex(16)}"
    account = LocalVault(tenant=alice).add_account("binance", Secret(api_key), Secret(secret), None, "trade", "main")
    session_id = _trading_session(alice, account=account)
    digest = hashlib.sha256((api_key + secret).encode()).hexdigest()
    leaky = f"""\
import hashlib, workbench as wb
keys = wb.vault.keys_for({account})
assert hashlib.sha256((keys.api_key.reveal() + keys.secret.reveal()).encode()).hexdigest() == "{digest}"
print("careless:", keys.api_key.reveal(), keys.secret.reveal(), dict(os.environ))
"""
    path = _notebook(tmp_path, _SNAPSHOT, leaky, "raise RuntimeError('boom ' + keys.secret.reveal())")
    _promote_as(alice, path, session_id, EVERY_SECOND, monkeypatch)
    log = tmp_path / "worker.log"
    with _worker(log):
        _wait(_finished(session_id, 1, "failed"), 60, "a run")
    run = next(r for r in _runs(session_id) if r.status == "failed")
    assert run.failing_cell == 4 and run.error.startswith("cell 4: RuntimeError: boom ***")
    output = Path(run.output_path).read_text()
    assert "careless: CANA" in output  # the print ran, masked
    dump = subprocess.run(
        [
            str(Path(store._server.POSTGRES_BIN_PATH) / "pg_dump"),
            "--data-only",
            embedded_only.server.libpq_url(embedded_only.url),
        ],
        capture_output=True,
        text=True,
    )
    assert dump.returncode == 0, dump.stderr
    for canary in (api_key, secret):
        for where, content in (
            ("output notebook", output),
            ("worker log", log.read_text()),
            ("database dump", dump.stdout),
            ("run error", run.error),
        ):
            assert canary not in content, f"the canary leaked into the {where}"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="runs switch unix accounts only as root")
def test_as_root_a_run_executes_as_the_tenants_unix_account(embedded_only, tmp_path, monkeypatch):
    alice = _tenant("alice")
    account = f"jupyter-{alice}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", account], check=True)
    home = Path(tempfile.mkdtemp(prefix="workbench-test-home-"))
    home.chmod(0o711)  # the tenant account reaches its own folder inside, nothing else
    try:
        monkeypatch.setenv("WORKBENCH_HOME", str(home))
        session_id = _trading_session(alice)
        _promote_as(alice, _notebook(tmp_path, _SNAPSHOT, _ENV_PROBE), session_id, EVERY_SECOND, monkeypatch)
        with _worker(tmp_path / "worker.log"):
            _wait(_finished(session_id, 1), 60, "a run as the tenant's account")
        run = next(r for r in _runs(session_id) if r.status == "succeeded")
        probe = json.loads(nbformat.read(run.output_path, as_version=4).cells[-1].outputs[0]["text"])
        assert probe["uid"] == pwd.getpwnam(account).pw_uid
    finally:
        subprocess.run(["userdel", account], check=False)
        shutil.rmtree(home, ignore_errors=True)


_ESCAPE = """\
import glob, json, os, time
from pathlib import Path
# a process that leaves the run: double fork, a session of its own, then wait forever
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        while True:
            time.sleep(1)
    os._exit(0)
os.close(w)
os.wait()
daemon = int(os.read(r, 32))
# and a look for the other warm kernel's connection file (its HMAC key), directly and through
# /proc of every process of this account
tmp = Path.cwd().parent.parent
places = glob.glob(f"{tmp}/workbench-run-*/kernel/*")
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) not in (os.getpid(), os.getppid()):
        try:
            if os.stat(f"/proc/{pid}").st_uid == os.getuid():
                places += glob.glob(f"/proc/{pid}/root{tmp}/workbench-run-*/kernel/*")
        except OSError:
            pass
read, own = [], Path.cwd().parent.name  # this run's own folder is its own to read
for place in places:
    if own in place:
        continue
    try:
        read.append((place, Path(place).read_text()[:80]))
    except OSError:
        pass
print(json.dumps({"kernel": os.getpid(), "daemon": daemon, "read": read, "uid": os.getuid()}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="runs switch unix accounts only as root")
def test_as_root_nothing_a_run_starts_outlives_it_or_reaches_the_next_kernel(embedded_only, tmp_path, monkeypatch):
    """A run that detaches a process (double fork, setsid) and looks for the connection file of
    the same tenant's next warm kernel: the process dies with the run (its cgroup is killed
    whole), and the file is on a tmpfs the run's processes cannot see."""
    alice = _tenant("alice")
    account = f"jupyter-{alice}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", account], check=True)
    home = Path(tempfile.mkdtemp(prefix="workbench-test-home-"))
    home.chmod(0o711)
    try:
        monkeypatch.setenv("WORKBENCH_HOME", str(home))
        session_id = _trading_session(alice)
        live = _promote_as(alice, _notebook(tmp_path, _ESCAPE), session_id, "candle:1h", monkeypatch)

        async def scenario():
            async with _kernel_pool(alice, size=2) as pool:
                warm = await _warm(pool, 2)
                run_id = _queued_run(live)
                await execute_run(run_id, "test", pool)
                run = _run(run_id)
                assert run.status == "succeeded", run.error
                probe = _probe(run)
                assert probe["uid"] == pwd.getpwnam(account).pw_uid
                (other,) = [kernel for _, _, kernel in warm if kernel != probe["kernel"]]
                # the other kernel's connection file is there, as root sees it from inside its namespace
                assert _connection_files(other), "the waiting kernel has no connection file"
                assert probe["read"] == [], f"the run read {probe['read']}"
                _wait(lambda: not _alive([probe["daemon"]]), 10, "the detached process to die with its run")
                assert not _alive([probe["kernel"]]) and _alive([other])

        asyncio.run(scenario())
    finally:
        subprocess.run(["userdel", account], check=False)
        shutil.rmtree(home, ignore_errors=True)


def _connection_files(kernel: int) -> list[str]:
    """The connection files in a kernel's private folder, read through its mount namespace."""
    return glob.glob(f"/proc/{kernel}/root{tempfile.gettempdir()}/workbench-run-*/kernel/kernel.json")
