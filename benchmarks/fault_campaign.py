"""Fault campaign: thousands of seeded live-session trials against the loopback venues.

Each trial (``tests/fault_campaign.py``, ``run_trial``) picks from its seed a venue (the
loopback Binance or Gate, talked to by the real ccxt classes), a market type, a template and
its faults (lost answers after acceptance, delayed visibility, partial fills, 5xx and 429 on
reads, answers slower than the client's timeout, rejects, crashes at the tick's checkpoints,
SIGKILLed tick processes), ticks a live session through them, heals, stops it or not, and
checks: no client order id executed twice, no lost fill, the recorded fills make the venue's
position, no position left unprotected by an ended session (per its ``on_error``).

One worker process per core, each with a fresh WORKBENCH_HOME and so its own embedded
PostgreSQL (as ``benchmarks/ticks.py``), takes seeds from a shared queue; failing trials are
printed as they come (replay one with ``python tests/fault_campaign.py SEED``), totals at the end.

Usage: ``python benchmarks/fault_campaign.py --trials 1000 [--seed-start 0] [--workers N] [--bars 30]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTS = ("duplicates", "lost_fills", "ledger_mismatch", "unprotected")


def _worker(seeds, results, bars: int, kill_fraction: float) -> None:
    """Run trials for the seeds it takes from ``seeds`` (None: done) in a database of its own."""
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-campaign-")
    for variable in ("DATABASE_URL", "WORKBENCH_DATABASE_URL", "WORKBENCH_TENANT_DATABASE_URL"):
        os.environ.pop(variable, None)
    sys.path.insert(0, str(ROOT / "tests"))
    import logging
    import warnings

    logging.disable(logging.WARNING)  # the sessions' own warnings are what the faults provoke
    warnings.simplefilter("ignore")
    from fault_campaign import run_trial

    from workbench import store

    try:
        with store.session():  # start the embedded server, migrate, create the tenant
            pass
        while (seed := seeds.get()) is not None:
            result = run_trial(seed, bars=bars, kill_fraction=kill_fraction)
            results.put(asdict(result) | {"ok": result.ok, "summary": result.summary()})
    finally:
        store.dispose()
        store.embedded_server().stop()
        results.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="default: one per core")
    parser.add_argument("--bars", type=int, default=30, help="bars per trial (the last four heal)")
    parser.add_argument(
        "--kill-fraction", type=float, default=0.1, help="share of trials with a SIGKILLed tick process (default 0.1)"
    )
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    seeds, results = context.Queue(), context.Queue()
    for seed in range(args.seed_start, args.seed_start + args.trials):
        seeds.put(seed)
    for _ in range(args.workers):
        seeds.put(None)
    print(
        f"{args.trials} trials from seed {args.seed_start}, {args.workers} workers, {args.bars} bars each; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    started = time.perf_counter()
    workers = [
        context.Process(target=_worker, args=(seeds, results, args.bars, args.kill_fraction))
        for _ in range(args.workers)
    ]
    for process in workers:
        process.start()
    done, running = [], len(workers)
    while running:
        result = results.get()
        if result is None:
            running -= 1
            continue
        done.append(result)
        if not result["ok"]:
            print("FAIL", result["summary"][:1500], flush=True)
        if len(done) % 50 == 0:
            print(f"  {len(done)} trials, {time.perf_counter() - started:.0f} s", flush=True)
    for process in workers:
        process.join()
    wall = time.perf_counter() - started
    _report(done, wall)
    return 0 if all(r["ok"] for r in done) and len(done) == args.trials else 1


def _report(done: list[dict], wall: float) -> None:
    failed = [r for r in done if not r["ok"]]
    print(
        f"\ntrials {len(done)}, failed {len(failed)}, wall time {wall:.0f} s "
        f"({wall / max(len(done), 1):.1f} s per trial overall)"
    )
    groups: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for r in done:
        group = groups[(r["venue"], r["market"], r["template"])]
        group["trials"] += 1
        group["failed"] += not r["ok"]
        group["fills"] += r["fills"]
    print(f"\n  {'venue':<8} {'market':<6} {'template':<14} {'trials':>6} {'failed':>6} {'fills':>6}")
    for (venue, market, template), group in sorted(groups.items()):
        print(f"  {venue:<8} {market:<6} {template:<14} {group['trials']:>6} {group['failed']:>6} {group['fills']:>6}")
    print()
    for name in (*COUNTS, "errors"):
        total = sum(len(r[name]) if name == "errors" else r[name] for r in done)
        print(f"  {name.replace('_', ' '):<18} {total:>6}   in {sum(1 for r in done if r[name])} trials")
    print(f"  {'orders placed':<18} {sum(r['orders'] for r in done):>6}")
    print(f"  {'venue trades':<18} {sum(r['fills'] for r in done):>6}")
    kinds = Counter(f.split("@")[0] for r in done for f in r["faults"].split()[1:])
    print("  faults injected:   " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    if failed:
        print("\nfailing seeds, by what broke:")
        for name in (*COUNTS, "errors"):
            seeds = sorted(r["seed"] for r in done if r[name])
            if seeds:
                print(f"  {name.replace('_', ' '):<18} " + " ".join(map(str, seeds)))


if __name__ == "__main__":
    sys.exit(main())
