"""``workbench worker``: one procrastinate worker, its dispatcher and its warm kernels, until stopped.

A worker needs only the database URL (``WORKBENCH_DATABASE_URL``/``DATABASE_URL``), the role
secret (``WORKBENCH_DB_ROLE_SECRET``, which the tenants' role passwords derive from) and the
master key (``WORKBENCH_MASTER_KEY``/``WORKBENCH_MASTER_KEY_FILE``, to decrypt the keys of
the runs it executes), so more workers run on other machines the same way. With a database
URL and neither the role secret nor its file, a worker refuses to start
(``check_shared_secrets``): one made up here would give the tenants' roles passwords the hub
does not know. When the
database goes away (restart, failover) the worker waits and reconnects instead of exiting;
SIGTERM/SIGINT stop it after the runs in progress (procrastinate's graceful shutdown), then
its warm kernels are killed.

The dispatcher wakes at the next due time of a live notebook (and at least every
``dispatch_interval``), so a run is queued as it falls due; procrastinate's LISTEN/NOTIFY
hands the job to a worker at once; the run takes a warm kernel of its tenant (``_pool``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import procrastinate
import procrastinate.worker
import psycopg
from sqlalchemy import make_url

from workbench import (
    research,  # noqa: F401 - registers certify_pending (every minute) on the job queue
    store,
)
from workbench.errors import SchedulerError
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


def check_shared_secrets() -> None:
    """Refuse to start without the hub's role secret when the database is another machine's.

    The secret is read from ``WORKBENCH_DB_ROLE_SECRET``, else from ``<home>/db-role.key``,
    which is generated when missing: right on one machine, where the hub and the worker
    share the home, wrong on another, where the generated secret differs from the hub's and
    every run would set its tenant's role to a password the hub and the tenant's server do
    not know (``store.restore_role`` takes the difference for the tenant's own change). The
    master key is checked alike, with a warning only: without it only the runs of sessions
    that trade with exchange keys fail, each saying why."""
    from workbench.vault import master_key_missing

    if not store.external_database():
        return  # the embedded server: one machine, one home
    missing = store.role_secret_missing()
    if missing is not None:
        raise SchedulerError(
            f"the database is another machine's but {missing} (hub_config/README.md, Hosts); one "
            "generated here would change the tenants' database passwords"
        )
    missing = master_key_missing()
    if missing is not None:
        _log.warning("%s; runs of sessions with exchange keys fail until then", missing)


def run_worker(options: WorkerOptions = WorkerOptions()) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    asyncio.run(serve(options))


async def serve(options: WorkerOptions) -> None:
    pool = KernelPool(options.warm_kernels, tenant_setup)
    await pool.start()
    app = queue_app(_queue_url(options.stalled_after), pool_size=options.concurrency + 2)  # once: reopened after a loss
    app.perform_import_paths()
    # SIGTERM/SIGINT are ours, not procrastinate's: its job loop also ends by itself when one of
    # its background loops fails (a heartbeat on a dead connection: procrastinate 3's
    # Worker._monitor_side_tasks stops the worker), and then it starts again
    stopping, running = asyncio.Event(), list[procrastinate.worker.Worker]()

    def stop() -> None:
        stopping.set()
        for worker in running:
            worker.stop()  # graceful: the runs in progress finish first

    def rejoin() -> None:  # presumed dead by the others (Fence): a new job loop, a new heartbeat
        for worker in running:
            worker.stop()

    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop)
    try:
        while not stopping.is_set():
            try:
                async with app.open_async():
                    worker = procrastinate.worker.Worker(
                        app=app,
                        queues=[QUEUE],
                        name=options.name,
                        concurrency=options.concurrency,
                        update_heartbeat_interval=options.heartbeat,
                        stalled_worker_timeout=options.stalled_after,
                        delete_jobs="successful",
                        install_signal_handlers=False,
                        additional_context={
                            "pool": pool,
                            "stalled_after": options.stalled_after,
                            "rejoin": rejoin,
                        },
                    )
                    running[:] = [worker]
                    dispatcher = asyncio.create_task(_dispatch_forever(app, pool, options))
                    try:
                        await worker.run()
                    finally:
                        dispatcher.cancel()
                        running.clear()
                if stopping.is_set():
                    return
                _log.warning(
                    "worker %s: its job loop stopped (a lost connection or heartbeat, see above); "
                    "starting it again in %g s",
                    options.name,
                    options.reconnect_delay,
                )
            except (procrastinate.exceptions.ConnectorException, psycopg.OperationalError, OSError) as exc:
                # procrastinate wraps the database's error: say the cause (a lost connection, or
                # a job that another worker marked abandoned while this one was cut off)
                cause = exc.__cause__ or exc
                _log.warning(
                    "worker %s lost the database (%s); reconnecting in %g s",
                    options.name,
                    str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__,
                    options.reconnect_delay,
                )
            if not stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), options.reconnect_delay)
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
        await pool.close()


def _queue_url(stalled_after: float) -> str:
    """The owner URL for the job queue's connections, with TCP timeouts unless it sets its own.

    Over a network a cut connection sends no reset: a query on it waits for TCP's
    retransmissions, minutes by default, and an idle one (procrastinate's LISTEN) is never
    found dead. A worker whose heartbeat query hangs so is presumed dead by the others after
    ``stalled_after`` (its runs marked abandoned), yet goes on taking jobs on its other
    connections once the network is back. libpq's ``tcp_user_timeout`` (unacknowledged data)
    and ``keepalives_*`` (idle connections) end such a connection within ``stalled_after``;
    the heartbeat then fails (at the latest when the pool gives up waiting for a new
    connection, 30 s), procrastinate stops the job loop and ``serve`` starts a new one,
    registered afresh (procrastinate 3: ``update_heartbeat_interval`` and
    ``stalled_worker_timeout`` of ``App.run_worker_async``, ``JobManager.get_stalled_jobs``).
    Until then ``_execute.Fence`` keeps such a worker from starting runs. Keywords:
    https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS (ignored on
    a unix socket, as the embedded server's)."""
    url = make_url(store.database_url())
    seconds = max(1, int(stalled_after))
    defaults = {
        "keepalives": "1",
        "keepalives_idle": str(max(1, seconds // 3)),
        "keepalives_interval": str(max(1, seconds // 6)),
        "keepalives_count": "3",
        "tcp_user_timeout": str(seconds * 1000),  # milliseconds
    }
    return url.update_query_dict({k: v for k, v in defaults.items() if k not in url.query}).render_as_string(
        hide_password=False
    )


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
