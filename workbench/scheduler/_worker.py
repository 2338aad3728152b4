"""``workbench worker``: one procrastinate worker, its dispatcher and its warm kernels, until stopped.

A worker needs only the database URL (``WORKBENCH_DATABASE_URL``/``DATABASE_URL``) and the
master key (``WORKBENCH_MASTER_KEY``/``WORKBENCH_MASTER_KEY_FILE``, to decrypt the keys of
the runs it executes), so more workers run on other machines the same way. When the
database goes away (restart, failover) the worker waits and reconnects instead of exiting;
SIGTERM/SIGINT stop it after the runs in progress (procrastinate's graceful shutdown), then
its warm kernels are killed.

The dispatcher wakes at the next due time of a live notebook (and at least every
``dispatch_interval``), so a run is queued as it falls due; procrastinate's LISTEN/NOTIFY
hands the job to a worker at once; the run takes a warm kernel of its tenant (``_pool``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import procrastinate
import psycopg

from workbench.jobs import QUEUE, queue_app
from workbench.notify import defer_delivery
from workbench.scheduler import _queue  # noqa: F401 - registers run_notebook on the job queue
from workbench.scheduler._dispatch import demand, dispatch_due, sweep_abandoned
from workbench.scheduler._execute import database, tenant_setup
from workbench.scheduler._pool import KernelPool

_log = logging.getLogger("workbench.scheduler")
_MIN_PAUSE = 0.005  # seconds: a pass that found a due notebook locked by another worker looks again soon


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker behaves. The defaults suit a 2-core machine running ticks: a paper tick
    run in a warm kernel (~55 MB each) takes ~0.5 s, ten at once ~2 s (benchmarks/RESULTS.md);
    heavier notebooks want a lower ``concurrency``."""

    concurrency: int = 10  # runs executed at once by this worker
    warm_kernels: int = 10  # ready kernels kept for the tenants with live notebooks (0: none)
    dispatch_interval: float = 1.0  # longest pause between dispatcher passes
    heartbeat: float = 2.0  # seconds between heartbeats
    stalled_after: float = 15.0  # a worker silent this long is dead; its runs are abandoned
    reconnect_delay: float = 2.0  # seconds between attempts while the database is away
    name: str = f"{socket.gethostname()}:{os.getpid()}"


def run_worker(options: WorkerOptions = WorkerOptions()) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    asyncio.run(serve(options))


async def serve(options: WorkerOptions) -> None:
    pool = KernelPool(options.warm_kernels, tenant_setup)
    await pool.start()
    app = queue_app(pool_size=options.concurrency + 2)  # once: reopened after a lost database
    try:
        while True:
            try:
                async with app.open_async():
                    dispatcher = asyncio.create_task(_dispatch_forever(app, pool, options))
                    try:
                        await app.run_worker_async(
                            queues=[QUEUE],
                            name=options.name,
                            concurrency=options.concurrency,
                            update_heartbeat_interval=options.heartbeat,
                            stalled_worker_timeout=options.stalled_after,
                            delete_jobs="successful",
                            install_signal_handlers=True,
                            additional_context={"pool": pool},
                        )
                    finally:
                        dispatcher.cancel()
                return  # stopped by a signal
            except (procrastinate.exceptions.ConnectorException, psycopg.OperationalError, OSError) as exc:
                _log.warning(
                    "worker %s lost the database (%s); reconnecting in %g s",
                    options.name,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    options.reconnect_delay,
                )
                await asyncio.sleep(options.reconnect_delay)
    finally:
        await pool.close()


async def _dispatch_forever(app: procrastinate.App, pool: KernelPool, options: WorkerOptions) -> None:
    """The dispatcher, the warm kernels' targets and the abandoned-run sweep, until cancelled."""
    while True:
        pause = options.dispatch_interval
        try:
            await database(dispatch_due)
            wanted = await database(demand)
            pool.want(wanted.tenants)
            await sweep_abandoned(app, options.stalled_after)
            await defer_delivery(app)  # workbench.notify: queue a delivery pass when one is due
            if wanted.next_due is not None:
                until = (wanted.next_due - datetime.now(UTC)).total_seconds()
                pause = min(pause, max(_MIN_PAUSE, until))
        except Exception:  # noqa: BLE001 - a failed pass is logged; the next one retries
            _log.exception("dispatcher pass failed")
        await asyncio.sleep(pause)
