"""Live tick benchmark: tick latency of a paper and a ccxt session, and ticks/s with 1, 10, 100 sessions.

Everything real, as in production single-user mode: a fresh WORKBENCH_HOME with the embedded
PostgreSQL (or ``--database-url``), the tenant "local", paper sessions whose paper account
lives in PostgreSQL and whose replay clock walks the bundled BTC/USD hourly candles, and a
ccxt session (the real ``ccxt.binance`` class, signed requests) against the loopback Binance
of ``tests/loopback_exchange.py`` on 127.0.0.1. Each tick is one ``workbench.live.tick``
call: lock, candles, the kernel's plan, reconcile, risk checks, orders, fills, snapshot.

* Latency: one session per template (and the ccxt one) ticks ``--ticks`` candles, replay
  starting 500 candles into the data (so indicators and paper history are warm); p50/p95
  of the wall time per tick, the first 10 ticks excluded.
* Throughput: N paper ``channel`` sessions (N = 1, 10, 100) ticked round-robin by one worker
  process per core (one session is ticked by one worker: a session ticks one at a time), all
  at once; ticks/s overall and per core (overall / workers; the PostgreSQL server runs on
  the same cores), and the workers' own CPU time per tick.

Usage: ``python benchmarks/ticks.py [--ticks 200] [--database-url URL]`` (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {
    "channel": {"entry_window": 12, "exit_window": 6, "direction": "both", "position_size": 0.5},
    "ema_reversal": {
        "ema_window": 20,
        "dip_levels": [0.4, 0.8, 1.2],
        "stop_loss": 1.5,
        "take_profit": [0.6, 1.2],
        "position_size": 0.9,
    },
    "market_making": {"spread": 1.0, "order_size": 0.03, "max_inventory": 1.0, "inventory": "both"},
}
START = 500  # replay from this candle: warm indicators, a realistic paper history


def _paper_session(name: str, template: str, ticks: int) -> int:
    import workbench as wb

    candles = wb.load_candles()
    wb.save_strategy(name, template, PARAMS[template])
    sid = wb.live.create_session(
        name, exchange="paper", replay_from=str(candles.index[START]), replay_end=str(candles.index[START + ticks + 1])
    )
    wb.live.start(sid)
    return sid


def _percentiles(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds[10:])
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   ({len(ms)} ticks)"


def _latency_paper(template: str, ticks: int) -> str:
    import workbench as wb

    sid = _paper_session(f"latency {template}", template, ticks)
    seconds = []
    for _ in range(ticks):
        started = time.perf_counter()
        report = wb.live.tick(sid)
        seconds.append(time.perf_counter() - started)
        assert report.status == "running" and not report.skipped, report
    return _percentiles(seconds)


def _latency_ccxt(ticks: int) -> str:
    import pandas as pd

    import workbench as wb
    from workbench import store

    sys.path.insert(0, str(ROOT / "tests"))
    from loopback_exchange import Binance

    candles = wb.load_candles().iloc[START - 100 : START + ticks + 1].copy()
    last = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=1)
    candles.index = pd.date_range(end=last, periods=len(candles), freq="1h", name="time")
    candles.attrs["timeframe"] = "1h"
    key, secret = secrets.token_hex(16), secrets.token_hex(32)
    with Binance(
        key, secret, {"USDT": "10000"}, prices={"BTC/USDT": str(candles["open"].iloc[0])}, candles={"BTC/USDT": candles}
    ) as server:
        account = wb.vault.add_account("binance", key, secret, permissions="trade", label="bench")
        wb.save_strategy("latency ccxt", "channel", PARAMS["channel"] | {"direction": "long"})
        sid = wb.live.create_session(
            "latency ccxt",
            "BTC/USDT",
            exchange="binance",
            account=account,
            market_type="spot",
            ccxt={"urls": server.config()["urls"]["api"], "config": {"enableRateLimit": False}},
        )
        wb.live.start(sid)
        with store.session() as scope:  # trade the moved candles from bar 100 on
            row = scope.get(store.TradingSession, sid)
            row.history_from = candles.index[0].to_pydatetime()
            row.anchor_at = candles.index[99].to_pydatetime()
        seconds = []
        for bar in range(100, 100 + ticks):
            server.set_price("BTC/USDT", str(candles["open"].iloc[bar]))
            started = time.perf_counter()
            report = wb.live.tick(sid, now=candles.index[bar].to_pydatetime())
            seconds.append(time.perf_counter() - started)
            assert report.status == "running" and not report.skipped, report
        orders = len(server.spot.orders)
    return f"{_percentiles(seconds)}; {orders} orders sent"


def _worker(sessions: list[int], rounds: int, environment: dict[str, str], results) -> None:
    os.environ.update(environment)
    import workbench as wb

    _ = wb.live.tick  # import before timing
    cpu, ticks = time.process_time(), 0
    for _ in range(rounds):
        for sid in sessions:
            report = wb.live.tick(sid)
            ticks += not report.skipped
    results.put((ticks, time.process_time() - cpu))


def _throughput(count: int, rounds: int) -> str:
    from workbench import store

    sessions = [_paper_session(f"load {count} {k}", "channel", rounds) for k in range(count)]
    store.dispose()  # the workers connect on their own
    workers = min(os.cpu_count() or 1, count)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    environment = {k: v for k, v in os.environ.items() if k.startswith("WORKBENCH")}
    processes = [
        context.Process(target=_worker, args=(sessions[k::workers], rounds, environment, results))
        for k in range(workers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    done = [results.get() for _ in processes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    ticks, cpu = sum(d[0] for d in done), sum(d[1] for d in done)
    rate = ticks / wall
    return (
        f"{count:>3} sessions, {workers} workers: {ticks:5d} ticks in {wall:6.1f} s = {rate:6.1f} ticks/s, "
        f"{rate / workers:6.1f} per core; worker CPU {cpu / ticks * 1000:5.1f} ms per tick"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200, help="ticks per latency measurement (default 200)")
    parser.add_argument("--database-url", help="an owner URL of an empty database (default: embedded PostgreSQL)")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="workbench-ticks-")
    os.environ["WORKBENCH_HOME"] = home
    for variable in ("DATABASE_URL", "WORKBENCH_TENANT_DATABASE_URL"):
        os.environ.pop(variable, None)
    if args.database_url:
        os.environ["WORKBENCH_DATABASE_URL"] = args.database_url
    from workbench import store

    try:
        with store.session():  # migrate, create tenant "local"
            pass
        print(
            f"PostgreSQL: {'embedded' if not args.database_url else args.database_url.split('@')[-1]}; "
            f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start\n"
        )
        print("tick latency")
        for template in PARAMS:
            print(f"  paper {template:<14} {_latency_paper(template, args.ticks)}")
        print(f"  binance (loopback) channel {_latency_ccxt(args.ticks)}")
        print("\nthroughput (paper channel sessions, all ticking at once)")
        for count, rounds in ((1, 200), (10, 30), (100, 4)):
            print("  " + _throughput(count, rounds))
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        store.dispose()
        if not args.database_url:
            store.embedded_server().stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
