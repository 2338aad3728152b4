"""``workbench worker``: one procrastinate worker plus the dispatcher, until stopped.

A worker needs only the database URL (``WORKBENCH_DATABASE_URL``/``DATABASE_URL``) and the
master key (``WORKBENCH_MASTER_KEY``/``WORKBENCH_MASTER_KEY_FILE``, to decrypt the keys of
the runs it executes), so more workers run on other machines the same way. When the
database goes away (restart, failover) the worker waits and reconnects instead of exiting;
SIGTERM/SIGINT stop it after the runs in progress (procrastinate's graceful shutdown).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

import procrastinate
import psycopg

from workbench.scheduler._dispatch import dispatch_due, sweep_abandoned
from workbench.scheduler._execute import database
from workbench.scheduler._queue import QUEUE, queue_app

_log = logging.getLogger("workbench.scheduler")


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker behaves; the defaults suit a production machine."""

    concurrency: int = 4  # runs executed at once by this worker
    dispatch_interval: float = 1.0  # seconds between dispatcher passes
    heartbeat: float = 2.0  # seconds between heartbeats
    stalled_after: float = 15.0  # a worker silent this long is dead; its runs are abandoned
    reconnect_delay: float = 2.0  # seconds between attempts while the database is away
    name: str = f"{socket.gethostname()}:{os.getpid()}"


def run_worker(options: WorkerOptions = WorkerOptions()) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    asyncio.run(serve(options))


async def serve(options: WorkerOptions) -> None:
    while True:
        app = queue_app(pool_size=options.concurrency + 2)
        try:
            async with app.open_async():
                dispatcher = asyncio.create_task(_dispatch_forever(app, options))
                try:
                    await app.run_worker_async(
                        queues=[QUEUE], name=options.name, concurrency=options.concurrency,
                        update_heartbeat_interval=options.heartbeat, stalled_worker_timeout=options.stalled_after,
                        delete_jobs="successful", install_signal_handlers=True)
                finally:
                    dispatcher.cancel()
            return  # stopped by a signal
        except (procrastinate.exceptions.ConnectorException, psycopg.OperationalError, OSError) as exc:
            _log.warning("worker %s lost the database (%s); reconnecting in %g s", options.name,
                         str(exc).splitlines()[0] if str(exc) else type(exc).__name__, options.reconnect_delay)
            await asyncio.sleep(options.reconnect_delay)


async def _dispatch_forever(app: procrastinate.App, options: WorkerOptions) -> None:
    """The dispatcher and the abandoned-run sweep, every ``dispatch_interval`` seconds."""
    while True:
        try:
            await database(dispatch_due)
            await sweep_abandoned(app, options.stalled_after)
        except Exception:  # noqa: BLE001 - a failed pass is logged; the next one retries
            _log.exception("dispatcher pass failed")
        await asyncio.sleep(options.dispatch_interval)
