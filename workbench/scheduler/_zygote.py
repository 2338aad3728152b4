"""The fork server behind a worker's warm kernels: ``python -m workbench.scheduler._zygote``.

Starting a run's processes from nothing costs seconds of CPU (an interpreter, papermill,
an IPython kernel, pandas, numba, the template kernels' compiled code); on a small machine
ten runs due at once queue behind each other. So each worker starts this process once: it
imports all of that and loads the compiled template kernels (``_warm``), then only forks.
Every fork is one *slot* (``_slot``): a new process that becomes one run's papermill client
and forks that run's kernel. A fork shares the warmed memory copy-on-write, starts in a
fraction of a second, and has run nothing before its run: each run still gets a fresh kernel.

Trust: this process belongs to the worker's (trusted) side and runs only this code; tenant
code never runs in it. It starts with an allow-listed environment (no database URL, no role
secret, no master key) and never receives a secret afterwards: its stdin is a unix
``SOCK_SEQPACKET`` socket whose other end only the worker holds, and each message carries
just the slot's folder, the unix account to drop to and the two sockets of a new slot
(``SCM_RIGHTS``); the tenant's environment reaches the slot directly from the worker, after
the fork. The slot closes this socket first thing, so no tenant process can ask for forks.
When the worker goes away (even killed) the socket closes: the slots notice on their own
sockets and kill themselves, and this process kills their cgroups (what they started, even
detached), removes their folders and exits.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

_log = logging.getLogger("workbench.scheduler")

_PR_SET_CHILD_SUBREAPER = 36
_MAX_MESSAGE = 4096
_SLOTS_EXIT = 5.0  # seconds the slots get to exit before their folders go


def _warm() -> None:
    """Import what a run uses and load the templates' compiled kernels, so that every fork
    starts with them (the same code path as a tick's plan, on synthetic candles)."""
    import ccxt  # noqa: F401 - live sessions on exchanges
    import ipykernel.ipkernel  # noqa: F401 - the kernel side
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import nbclient  # noqa: F401 - papermill's side
    import numpy as np
    import pandas as pd
    import papermill  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401 - loaded by the first connection
    from jupyter_client import AsyncKernelManager, BlockingKernelClient  # noqa: F401

    import workbench  # noqa: F401 - what the notebooks import
    import workbench.exchange._paper  # noqa: F401
    import workbench.exchange._paper_pg  # noqa: F401
    import workbench.live._tick  # noqa: F401
    import workbench.store._tenants  # noqa: F401 - store.session(): engines, models, psycopg, alembic
    import workbench.vault  # noqa: F401
    from workbench.live._plan import plan
    from workbench.strategies import templates

    bars = 400
    index = pd.date_range("2020-01-01", periods=bars, freq="1h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, bars)))
    candles = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0}, index=index
    )
    for name in templates():
        try:
            plan(
                name,
                {},
                {},
                candles.iloc[:-1],
                index[bars // 4],
                index[-1],
                float(close[-1]),
                10_000.0,
                fees={"maker": 0.001, "taker": 0.001},
                slippage=0.0,
            )
        except Exception:  # noqa: BLE001 - a template that cannot warm up still runs, only slower
            _log.warning("could not warm up template %s", name, exc_info=True)


def main() -> int:
    from workbench.scheduler import _slot

    control = socket.socket(fileno=0)
    _warm()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # slots (and kernels they orphan) are reaped at once
    try:  # orphaned kernels come back here instead of to an init that may not reap them
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    folders: list[str] = []  # of the slots, for when the worker dies without removing them
    cgroups: list[str] = []  # likewise
    while True:
        message, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 2)
        if not message:
            break  # the worker is gone
        spec = json.loads(message)
        folders = [folder for folder in folders if os.path.isdir(folder)] + [spec["folder"]]
        if spec.get("cgroup"):
            cgroups = [cgroup for cgroup in cgroups if os.path.isdir(cgroup)] + [spec["cgroup"]]
        if os.fork() == 0:
            os._exit(_slot.main(fds, spec))
        for fd in fds:
            os.close(fd)
    _remove(folders, cgroups)
    return 0


def _remove(folders: list[str], cgroups: list[str]) -> None:
    """Once the slots have exited (they kill themselves when the worker goes), what their runs
    left: processes in their cgroups, and their folders (notebooks and outputs of runs the
    worker never finished recording)."""
    import psutil

    from workbench.scheduler._slot import kill_cgroup

    psutil.wait_procs(psutil.Process().children(recursive=True), timeout=_SLOTS_EXIT)
    for cgroup in cgroups:
        kill_cgroup(Path(cgroup))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s zygote %(levelname)s %(message)s")
    sys.exit(main())
