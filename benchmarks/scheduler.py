"""Scheduler benchmark: how late a due run starts, and where a paper tick run's time goes.

For each fleet size (default 1, 10 and 50 live paper sessions) in a fresh single-user
workbench (embedded PostgreSQL in a temporary WORKBENCH_HOME): create and start the
sessions, promote ``notebooks/live/paper_channel.ipynb`` for each, make them all due at
the same instant T, and let one real ``workbench worker`` (``--concurrency``) execute the
round. Reported per fleet: due-to-started latency (``started_at - T``: dispatcher pass,
procrastinate fetch, the worker claiming the run) at p50/p95/max, the round's wall time,
and the run breakdown from the runs' recorded timings (medians): run process start and
papermill import, kernel start (to the first cell), ``import workbench`` (the ``imports``
cell), the tick (the ``tick`` cell: ``wb.live.tick``) and the run's total, end to end.

Usage: ``python benchmarks/scheduler.py [--sessions 1 10 50] [--concurrency 4]``
(see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "live" / "paper_channel.ipynb"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _round(count: int, concurrency: int) -> dict[str, float]:
    import workbench as wb
    from sqlalchemy import update

    from workbench import store
    from workbench.store.models import LiveNotebook, NotebookRun

    strategy = wb.save_strategy(f"bench {count}", "channel", {"entry_window": 24, "exit_window": 12})
    sessions = []
    for _ in range(count):
        session = wb.live.create_session(strategy.id, exchange="paper")
        wb.live.start(session)
        wb.promote(NOTEBOOK, session, "candle:1h")
        sessions.append(session)
    with open(Path(os.environ["WORKBENCH_HOME"]) / f"worker-{count}.log", "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "workbench.cli", "worker", "--concurrency", str(concurrency)],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)  # the worker is up and listening
        due = datetime.now(timezone.utc) + timedelta(seconds=2)
        with store.owner_session() as s:
            s.execute(update(LiveNotebook).where(LiveNotebook.session_id.in_(sessions), LiveNotebook.status == "active")
                      .values(next_run_at=due))
        deadline = time.monotonic() + 60 + 30 * count
        while time.monotonic() < deadline:
            with store.owner_session() as s:
                runs = s.query(NotebookRun).join(LiveNotebook, LiveNotebook.id == NotebookRun.live_notebook_id).filter(
                    LiveNotebook.session_id.in_(sessions)).all()
            if len(runs) == count and all(r.status in ("succeeded", "failed") for r in runs):
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"{count} sessions: the round did not finish in time")
    finally:
        worker.terminate()
        worker.wait(60)
        for session in sessions:
            wb.scheduler.stop(session)
    failed = [r for r in runs if r.status != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, e.g.: {failed[0].error}")
    latency = [(r.started_at - due).total_seconds() for r in runs]
    wall = (max(r.finished_at for r in runs) - due).total_seconds()

    def median(key: str) -> float:
        return statistics.median(r.timings.get(key, 0.0) for r in runs)

    return {"latency p50": _quantile(latency, 0.5), "latency p95": _quantile(latency, 0.95),
            "latency max": max(latency), "round wall": wall, "process + papermill": median("process"),
            "kernel start": median("kernel_start"), "imports": median("imports"), "tick": median("tick"),
            "run total": median("total")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as home:
        os.environ["WORKBENCH_HOME"] = home
        for variable in ("WORKBENCH_DATABASE_URL", "DATABASE_URL", "WORKBENCH_TENANT_DATABASE_URL"):
            os.environ.pop(variable, None)
        from workbench import store

        try:
            results = {count: _round(count, args.concurrency) for count in args.sessions}
        finally:
            store.embedded_server().stop()
    names = list(next(iter(results.values())))
    print(f"| seconds (worker concurrency {args.concurrency}) | " + " | ".join(f"{n} sessions" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[n][name]:.2f}" for n in results) + " |")


if __name__ == "__main__":
    main()
