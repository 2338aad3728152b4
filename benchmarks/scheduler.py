"""Scheduler benchmark: how late a due run starts, where a paper tick run's time goes, what warm kernels cost.

For each fleet size (default 1, 10 and 50 live paper sessions) in a fresh single-user
workbench (embedded PostgreSQL in a temporary WORKBENCH_HOME): create and start the
sessions, promote ``notebooks/live/paper_channel.ipynb`` for each, start one real
``workbench worker`` (``--concurrency``, ``--warm-kernels``), wait until its warm kernels are
up (steady state: a worker runs for days), measure their memory, make every session due at
the same instant T and let the worker execute the round; ``--rounds`` rounds per fleet.

Reported per fleet, over all its runs: due -> started (``started_at - T``: dispatcher, job
queue, the worker claiming the run), due -> first cell (the notebook's first cell starting in
its kernel: what "the run started" means to the tenant), due -> finished (end to end), at
p50/p95/max; the run breakdown (medians of the runs' recorded timings): waiting for a
kernel, asking for a kernel -> first cell, the ``imports`` cell (``import workbench as wb``),
the ``tick`` cell (``wb.live.tick``), the run's total; how many runs found a warm kernel; the
memory of the zygote and of one warm kernel (slot process + kernel, RSS/PSS/USS; the median
over the warm kernels), and of the whole pool (proportional set size: shared pages split
among the processes sharing them); the load average before and after.

Usage: ``python benchmarks/scheduler.py [--sessions 1 10 50] [--concurrency 10]
[--warm-kernels 10] [--rounds 2]`` (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "live" / "paper_channel.ipynb"
MB = 2**20


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _first_cell(output_path: str) -> datetime:
    cells = json.loads(Path(output_path).read_text())["cells"]
    return min(
        datetime.fromisoformat(c["metadata"]["papermill"]["start_time"])
        for c in cells
        if c["cell_type"] == "code" and c["metadata"].get("papermill", {}).get("start_time")
    )


def _pool_processes(worker: psutil.Process) -> tuple[psutil.Process | None, list[tuple[psutil.Process, list]]]:
    """The worker's zygote and its slots with their kernels."""
    zygote = next((p for p in worker.children() if "workbench.scheduler._zygote" in " ".join(p.cmdline())), None)
    if zygote is None:
        return None, []
    return zygote, [(slot, slot.children()) for slot in zygote.children()]


def _wait_warm(worker: psutil.Process, count: int, timeout: float = 180) -> None:
    """Until ``count`` slots each have their kernel, and a little longer (the last one's handshake)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, slots = _pool_processes(worker)
            if sum(1 for _, kernels in slots if kernels) >= count:
                time.sleep(2)
                return
        except psutil.Error:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the worker did not warm {count} kernels in {timeout:g} s")


def _memory(worker: psutil.Process) -> dict[str, float]:
    zygote, slots = _pool_processes(worker)
    zygote_info = zygote.memory_full_info()
    per_slot = []
    for slot, kernels in slots:
        infos = [p.memory_full_info() for p in (slot, *kernels)]
        per_slot.append({key: sum(getattr(i, key) for i in infos) / MB for key in ("rss", "pss", "uss")})
    out = {"zygote RSS MB": zygote_info.rss / MB, "zygote USS MB": zygote_info.uss / MB}
    for key in ("rss", "pss", "uss"):
        out[f"warm kernel {key.upper()} MB"] = statistics.median(s[key] for s in per_slot) if per_slot else 0.0
    out["warm kernels"] = len(per_slot)
    out["zygote + warm kernels, PSS total MB"] = zygote_info.pss / MB + sum(s["pss"] for s in per_slot)
    return out


def _fleet(count: int, args: argparse.Namespace) -> dict[str, float]:
    from sqlalchemy import update

    import workbench as wb
    from workbench import store
    from workbench.store.models import LiveNotebook, NotebookRun

    strategy = wb.save_strategy(f"bench {count}", "channel", {"entry_window": 24, "exit_window": 12})
    sessions = []
    for _ in range(count):
        session = wb.live.create_session(strategy.id, exchange="paper")
        wb.live.start(session)
        wb.promote(NOTEBOOK, session, "candle:1h")
        sessions.append(session)
    load_before = os.getloadavg()[0]
    with open(Path(os.environ["WORKBENCH_HOME"]) / f"worker-{count}.log", "ab") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.cli",
                "worker",
                "--concurrency",
                str(args.concurrency),
                "--warm-kernels",
                str(args.warm_kernels),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    runs, memory = [], {}
    try:
        process = psutil.Process(worker.pid)
        for number in range(args.rounds):
            if args.warm_kernels:
                _wait_warm(process, min(count, args.warm_kernels))
                memory = memory or _memory(process)
            else:
                time.sleep(8)  # the zygote has imported everything
            due = datetime.now(UTC) + timedelta(seconds=2)
            with store.owner_session() as s:
                s.execute(
                    update(LiveNotebook)
                    .where(LiveNotebook.session_id.in_(sessions), LiveNotebook.status == "active")
                    .values(next_run_at=due)
                )
            deadline = time.monotonic() + 60 + 10 * count
            while time.monotonic() < deadline:
                with store.owner_session() as s:
                    batch = (
                        s.query(NotebookRun)
                        .join(LiveNotebook, LiveNotebook.id == NotebookRun.live_notebook_id)
                        .filter(LiveNotebook.session_id.in_(sessions), NotebookRun.id.notin_([r.id for _, r in runs]))
                        .all()
                    )
                if len(batch) == count and all(r.status in ("succeeded", "failed") for r in batch):
                    break
                time.sleep(0.5)
            else:
                raise SystemExit(f"{count} sessions, round {number + 1}: the round did not finish in time")
            runs += [(due, run) for run in batch]
            with store.owner_session() as s:  # a run is unique per due candle: make room for the next round
                s.execute(
                    update(NotebookRun)
                    .where(NotebookRun.id.in_([r.id for r in batch]))
                    .values(scheduled_for=NotebookRun.scheduled_for - timedelta(days=1 + number))
                )
    finally:
        worker.terminate()
        worker.wait(60)
        for session in sessions:
            wb.scheduler.stop(session)
    load_after = os.getloadavg()[0]
    failed = [r for _, r in runs if r.status != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, e.g.: {failed[0].error}")

    def spread(name: str, values: list[float]) -> dict[str, float]:
        return {
            f"{name} p50": _quantile(values, 0.5),
            f"{name} p95": _quantile(values, 0.95),
            f"{name} max": max(values),
        }

    def median(key: str) -> float:
        return statistics.median(r.timings.get(key, 0.0) for _, r in runs)

    return {
        **spread("due → started", [(r.started_at - due).total_seconds() for due, r in runs]),
        **spread("due → first cell", [(_first_cell(r.output_path) - due).total_seconds() for due, r in runs]),
        **spread("due → finished", [(r.finished_at - due).total_seconds() for due, r in runs]),
        "runs that found a warm kernel": sum(bool(r.timings.get("warm")) for _, r in runs) / len(runs),
        "kernel wait": median("kernel_wait"),
        "ask for kernel → first cell": median("kernel_start"),
        "`import workbench as wb`": median("imports"),
        "tick (`wb.live.tick`)": median("tick"),
        "run total (ask for kernel → output saved)": median("total"),
        **memory,
        "load average before": load_before,
        "load average after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--warm-kernels", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per fleet size (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as home:
        os.environ["WORKBENCH_HOME"] = home
        for variable in ("WORKBENCH_DATABASE_URL", "DATABASE_URL", "WORKBENCH_TENANT_DATABASE_URL"):
            os.environ.pop(variable, None)
        from workbench import store

        try:
            results = {count: _fleet(count, args) for count in args.sessions}
        finally:
            store.embedded_server().stop()
    names = list(next(iter(results.values())))
    print(
        f"| seconds unless noted (worker --concurrency {args.concurrency} --warm-kernels {args.warm_kernels}, "
        f"{args.rounds} rounds) | " + " | ".join(f"{n} sessions" for n in results) + " |"
    )
    print("|---|" + "---:|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[n][name]:.2f}" for n in results) + " |")


if __name__ == "__main__":
    main()
