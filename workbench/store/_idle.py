"""Tenant connections closed when idle, so that connections grow with active tenants only.

Every tenant is a PostgreSQL role of its own (row-level security by role), so no pool can be
shared between tenants, and a pool that keeps its connection forever pins one server process
per tenant that ever connected: the workbench service that served a thousand tenants, every
JupyterLab kernel that read a strategy, every dashboard kernel. :func:`close_when_idle`
closes a pool's idle connections once none has been used for ``after`` seconds; the next
session connects again (a few milliseconds of SCRAM and backend start). Connections in use
are never touched: ``Pool.dispose()`` closes only the ones checked in.

One daemon thread per process looks at the registered pools; a forked child (the worker's
zygote forks its slots) has no such thread until its first pool registers.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from sqlalchemy import Engine, event

from workbench.errors import DatabaseError

IDLE_CLOSE_ENV = "WORKBENCH_DB_IDLE_CLOSE"
DEFAULT_IDLE_CLOSE = 60.0  # seconds: one reconnect per idle minute, not one per query

_lock = threading.Lock()
_last_used: weakref.WeakKeyDictionary[Engine, tuple[float, float]] = weakref.WeakKeyDictionary()  # (last use, after)
_reaper: tuple[int, threading.Thread] | None = None  # (pid that started it, thread)
_registered = threading.Event()


def idle_close_after() -> float:
    """Seconds an idle tenant connection stays open (``WORKBENCH_DB_IDLE_CLOSE``; 0 keeps it)."""
    raw = os.environ.get(IDLE_CLOSE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_CLOSE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise DatabaseError(f"{IDLE_CLOSE_ENV}={raw!r} is not a number of seconds (0 keeps idle connections)")
    return seconds


def close_when_idle(engine: Engine, after: float) -> Engine:
    """Close ``engine``'s pooled connections once none was used for ``after`` seconds."""
    if after <= 0:
        return engine

    def used(*_: object) -> None:
        _last_used[engine] = (time.monotonic(), after)

    event.listen(engine, "checkout", used)
    event.listen(engine, "checkin", used)
    with _lock:
        _last_used[engine] = (time.monotonic(), after)
        _ensure_reaper()
    _registered.set()
    return engine


def _ensure_reaper() -> None:
    global _reaper
    if _reaper is not None and _reaper[0] == os.getpid() and _reaper[1].is_alive():
        return
    thread = threading.Thread(target=_reap, name="workbench-idle-connections", daemon=True)
    _reaper = (os.getpid(), thread)
    thread.start()


def _reap() -> None:
    """Every quarter of the shortest delay (0.25 s to 15 s), dispose of the idle pools."""
    while True:
        with _lock:
            engines = list(_last_used.items())
        now = time.monotonic()
        for engine, (last, after) in engines:
            pool = engine.pool
            if now - last >= after and pool.checkedout() == 0 and pool.checkedin() > 0:  # type: ignore[attr-defined]
                pool.dispose()
        shortest = min((after for _, (_, after) in engines), default=DEFAULT_IDLE_CLOSE)
        _registered.wait(min(max(shortest / 4, 0.25), 15.0))  # a new pool may want a shorter look
        _registered.clear()
