"""A worker's warm kernels: ready-to-run kernels for the tenants whose notebooks are live.

A run that starts its interpreter, papermill and a kernel and imports the trading stack
spends seconds of CPU before its first cell; ten of those at once on two cores queue for
half a minute. So each worker keeps a *pool*: one zygote (``_zygote``, started once, the
stack imported and the template kernels compiled) forks *slots* (``_slot``), each a ready
kernel of one tenant, running as that tenant (its unix account when the worker is root,
its database role, a private HOME and folder), that has run nothing yet. A run takes a
ready slot of its tenant (``acquire``), or one forked for it on the spot when none is
ready; after its one run the slot and its kernel are killed, never reused.

Which kernels are kept warm: ``want`` gets, at every dispatcher pass, each tenant's count of
live notebooks of running sessions, soonest due first; the pool keeps up to ``size`` idle
slots, one per live notebook, in that order, closes the idle slots nobody needs any more and
replaces used or dead ones in the background, ``_WARMING`` at a time so that warming does
not take the CPU from the runs (a tenant whose kernels fail to start is retried after
``_RETRY_AFTER``). Each idle slot costs about 55 MB of unique memory; the rest is shared with
the zygote, ~320 MB once per worker (benchmarks/RESULTS.md has the measured figures).

Exchange keys are not in a waiting slot: they are handed to the kernel when its run starts
(``_keys``). Closing the pool (the worker stops) kills every slot and the zygote.

Each slot runs in a cgroup of its own where the machine allows it (``_slot.run_cgroups``):
releasing it kills the cgroup whole, so nothing its run started survives the run, whatever it
forked or detached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from workbench.scheduler._slot import PRIVATE, kill_cgroup, run_cgroups

_log = logging.getLogger("workbench.scheduler")

READY_TIMEOUT = 120.0  # seconds a slot may take to become ready (the zygote imports first: ~4 s)
_WARMING = max(1, os.cpu_count() or 1)  # background slots warming at once
_RETRY_AFTER = 10.0  # seconds before warming again for a tenant whose kernel failed to start
_LOG_TAIL = 16_000  # bytes of a slot's output kept for the error of a run that dies
_PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM")


class SlotLost(RuntimeError):
    """A slot died before its run started: nothing of the run executed, another slot may take it."""


class _Closed(SlotLost):
    """The pool closed the slot (not a failure to start)."""


@dataclass(frozen=True)
class TenantSetup:
    """How a tenant's slots run: their environment and the unix account to switch to."""

    env: dict[str, str]
    owner: tuple[int, int] | None  # (uid, gid); None: the worker's own account


def passed_environment() -> dict[str, str]:
    """The worker's environment variables every child may see (locale, PATH, time zone)."""
    return {name: value for name, value in os.environ.items() if name in _PASSED_ENV or name.startswith("LC_")}


@dataclass(frozen=True)
class Finished:
    """How a slot's run ended (see ``_slot`` for ``code``)."""

    code: int
    error: str | None


class Slot:
    """One kernel of one tenant, warm or warming, for exactly one run.

    Its ``folder`` (0700, or 0711 when the slot runs as another account) belongs to the worker,
    so what the worker creates there (the key hand-off socket) no tenant process can replace;
    ``work`` inside belongs to the slot's account: its current directory and the output
    notebook; ``private`` is the kernel's folder (connection file, sockets, IPython and Jupyter
    folders, the input notebook): as root, a tmpfs only the slot's own processes see."""

    def __init__(self, tenant: str):
        self.tenant = tenant
        self.folder: Path | None = None  # made just before the fork (the zygote then knows it)
        self.cgroup: Path | None = None  # the cgroup holding every process of the slot, where there is one
        self.owner: tuple[int, int] | None = None  # the unix account it runs as, when not the worker's
        self.pid: int | None = None  # the slot process, leader of the run's process group
        self.kernel: int | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(lambda future: future.cancelled() or future.exception())  # retrieved
        self.gone = False  # its processes exited or are being killed
        self._closed = False
        self._messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._log = bytearray()
        self._writer: asyncio.StreamWriter | None = None
        self._log_writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def warm(self) -> bool:
        """Ready to run at once."""
        return self.ready.done() and not self.ready.exception() and not self.gone

    @property
    def work(self) -> Path:
        assert self.folder is not None
        return self.folder / "work"

    @property
    def private(self) -> Path:
        assert self.folder is not None
        return self.folder / PRIVATE

    def output(self) -> str:
        """The tail of what the slot and its kernel wrote to stdout and stderr."""
        return self._log.decode(errors="replace")

    async def attach(
        self, control: socket.socket, log: socket.socket, setup: dict[str, Any], on_gone: Callable[[Slot], None]
    ) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=control)
        log_reader, self._log_writer = await asyncio.open_unix_connection(sock=log)  # kept: closes it when dropped
        self._send(setup)
        self._tasks = [
            asyncio.create_task(self._read(reader, on_gone)),
            asyncio.create_task(self._read_log(log_reader)),
        ]

    def fail(self, error: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)

    async def run(self, order: dict[str, Any], timeout: float) -> Finished:
        """Hand the slot its run; how it ended. ``SlotLost`` if it died before starting the
        run, ``TimeoutError`` after ``timeout`` seconds (the caller kills it)."""
        self._send(order)
        started = False
        async with asyncio.timeout(timeout):
            while True:
                message = await self._messages.get()
                if message is None or "failed" in message:
                    reason = (message or {}).get("failed") or "its process exited"
                    if not started:
                        raise SlotLost(f"the kernel was lost before the run started: {reason}")
                    return Finished(2, f"the run's process died: {reason}")
                if "started" in message:
                    started = True
                elif "done" in message:
                    return Finished(message["done"]["code"], message["done"]["error"])

    async def close(self) -> None:
        """Kill the slot's processes (its cgroup, process group and every descendant); remove its folder."""
        if self._closed:
            return
        self.gone = self._closed = True
        self.fail(_Closed("the slot was closed"))
        for writer in (self._writer, self._log_writer):
            if writer is not None:
                writer.close()
        if self.cgroup is not None:
            await asyncio.to_thread(kill_cgroup, self.cgroup)
        if self.pid is not None:
            await asyncio.to_thread(kill_group, self.pid)
        for task in self._tasks:
            task.cancel()
        if self.folder is not None:
            await asyncio.to_thread(shutil.rmtree, self.folder, True)

    def _send(self, message: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(json.dumps(message).encode() + b"\n")

    async def _read(self, reader: asyncio.StreamReader, on_gone: Callable[[Slot], None]) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "pid" in message:
                    self.pid = message["pid"]
                elif "ready" in message:
                    self.kernel = message["ready"]["kernel"]
                    if not self.ready.done():
                        self.ready.set_result(None)
                elif "failed" in message and not self.ready.done():
                    await asyncio.sleep(0.1)  # let the log catch up: the kernel's last words say why
                    said = self.output()[-2000:].strip()
                    self.fail(
                        SlotLost(f"the kernel did not start: {message['failed']}" + (f":\n{said}" if said else ""))
                    )
                else:
                    self._messages.put_nowait(message)
        except (ValueError, ConnectionError):
            pass
        finally:
            self.gone = True
            if not self.ready.done():
                await asyncio.sleep(0.1)  # let the log catch up: it says why
                self.fail(SlotLost(f"the slot process exited before its kernel was ready:\n{self.output()[-2000:]}"))
            self._messages.put_nowait(None)
            on_gone(self)

    async def _read_log(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(65536):
            self._log += chunk
            del self._log[:-_LOG_TAIL]


class KernelPool:
    """The worker's warm kernels: up to ``size`` idle slots among the tenants with live
    notebooks (``want``); ``acquire`` gives a run its tenant's slot."""

    def __init__(self, size: int, setup: Callable[[str], Awaitable[TenantSetup]]):
        self.size = size
        self._setup = setup
        self._idle: dict[str, list[Slot]] = defaultdict(list)  # warming or warm, not taken
        self._busy: set[Slot] = set()
        self._targets: dict[str, int] = {}
        self._zygote = _Zygote()
        self._closed = False
        self._tasks: set[asyncio.Task] = set()  # slots starting or closing in the background
        self._failed: dict[str, float] = {}  # tenant -> when one of its kernels last failed to start
        self._cgroups: Path | None = None

    async def start(self) -> None:
        self._cgroups = await asyncio.to_thread(run_cgroups)
        if self._cgroups is None:
            _log.warning(
                "no cgroup v2 to contain runs here (needs root and cgroup.kill): a run is killed by "
                "its process group and descendants, which a process that calls setsid() escapes"
            )
        await self._zygote.start()

    def want(self, demand: Iterable[tuple[str, int]]) -> None:
        """Keep warm slots for ``(tenant, live notebooks)``, soonest due first, up to ``size``."""
        targets, left = {}, self.size
        for tenant, count in demand:
            targets[tenant] = min(count, left)
            left -= targets[tenant]
        self._targets = targets
        self._refill()

    async def acquire(self, tenant: str) -> tuple[Slot, bool]:
        """A ready slot of ``tenant`` for one run, and whether it was warm when asked for."""
        if self._closed:
            raise _Closed("the worker is stopping")
        slots = self._idle[tenant]
        slot = next((s for s in slots if s.warm), None) or next((s for s in slots if not s.gone), None)
        if slot is None:
            slot = self._spawn(tenant)
        else:
            slots.remove(slot)
        warm = slot.warm
        self._busy.add(slot)
        self._refill()
        try:
            await asyncio.wait_for(asyncio.shield(slot.ready), READY_TIMEOUT)
        except BaseException:
            await self.release(slot)
            raise
        return slot, warm

    async def release(self, slot: Slot) -> None:
        """Done with a slot (its run finished or never started): it and its kernel go."""
        self._busy.discard(slot)
        await slot.close()

    def kernels(self) -> dict[str, Any]:
        """What the pool holds now: the zygote's pid, the warm and warming slots' pids."""
        idle = [s for slots in self._idle.values() for s in slots]
        return {
            "zygote": self._zygote.pid,
            "warm": [(s.tenant, s.pid, s.kernel) for s in idle if s.warm],
            "warming": sum(not s.ready.done() for s in idle),
            "busy": len(self._busy),
        }

    async def close(self) -> None:
        """Kill every slot (warm, warming or running), whatever they started, and the zygote."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        slots = [s for slots in self._idle.values() for s in slots] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(slot.close() for slot in slots))
        if self._zygote.pid is not None:  # slots still warming, kernels their slots orphaned
            await asyncio.to_thread(_kill_descendants, self._zygote.pid)
        await self._zygote.stop()

    def _refill(self) -> None:
        """Close the idle slots no tenant needs; start slots up to the targets, a few at a time."""
        if self._closed:
            return
        for tenant, slots in list(self._idle.items()):
            slots[:] = [s for s in slots if not s.gone]
            target = self._targets.get(tenant, 0)
            while len(slots) > target:
                surplus = next((s for s in slots if not s.warm), slots[-1])
                slots.remove(surplus)
                self._background(surplus.close())
            if not slots:
                del self._idle[tenant]
        warming = sum(not s.ready.done() for slots in self._idle.values() for s in slots)
        now = time.monotonic()
        for tenant, target in self._targets.items():
            if now - self._failed.get(tenant, -_RETRY_AFTER) < _RETRY_AFTER:
                continue
            while len(self._idle[tenant]) < target and warming < _WARMING:
                self._idle[tenant].append(self._spawn(tenant))
                warming += 1

    def _spawn(self, tenant: str) -> Slot:
        slot = Slot(tenant)
        slot.ready.add_done_callback(lambda _: self._warmed(slot))
        self._background(self._start(slot))
        return slot

    def _warmed(self, slot: Slot) -> None:
        """A slot is ready or failed to start: another one may warm now."""
        error = None if slot.ready.cancelled() else slot.ready.exception()
        if error is not None and not isinstance(error, _Closed):
            _log.warning("a kernel for tenant %s did not start: %s", slot.tenant, error)
            self._failed[slot.tenant] = time.monotonic()
        self._refill()

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, slot: Slot) -> None:
        ours: list[socket.socket] = []
        try:
            setup = await self._setup(slot.tenant)
            slot.owner = setup.owner
            slot.folder = Path(tempfile.mkdtemp(prefix="workbench-run-"))
            slot.work.mkdir(mode=0o700)
            slot.private.mkdir(mode=0o700)  # as root the slot mounts its tmpfs here
            if setup.owner:  # the folder stays the worker's (keys.sock), the tenant reaches work/ inside
                os.chmod(slot.folder, 0o711)
                os.chown(slot.work, *setup.owner)
            if self._cgroups is not None:
                slot.cgroup = self._cgroups / slot.folder.name
                slot.cgroup.mkdir()
            env = dict(
                setup.env,
                IPYTHONDIR=str(slot.private / "ipython"),
                JUPYTER_RUNTIME_DIR=str(slot.private / "runtime"),
                JUPYTER_CONFIG_DIR=str(slot.private / "jupyter"),
            )
            control, log = socket.socketpair(), socket.socketpair()
            ours = [control[0], log[0]]
            try:
                account = {"uid": setup.owner[0], "gid": setup.owner[1]} if setup.owner else {}
                await self._zygote.fork(
                    {"folder": str(slot.folder), "cgroup": slot.cgroup and str(slot.cgroup), **account},
                    [control[1].fileno(), log[1].fileno()],
                )
            finally:
                control[1].close()
                log[1].close()
            await slot.attach(
                control[0], log[0], {"env": env, "folder": str(slot.work), "private": str(slot.private)}, self._gone
            )
        except Exception as exc:  # noqa: BLE001 - the run waiting for this slot gets the error
            for sock in ours:
                sock.close()
            slot.fail(exc)
            await slot.close()

    def _gone(self, slot: Slot) -> None:
        """A slot's processes exited: if it was idle (its kernel died), clear it away and replace it."""
        if slot not in self._busy and not self._closed:
            slots = self._idle.get(slot.tenant, [])
            if slot in slots:
                slots.remove(slot)
                self._background(slot.close())
            self._refill()


class _Zygote:
    """The fork server process; restarted if it died."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workbench.scheduler._zygote",
                stdin=theirs.fileno(),
                env=passed_environment(),
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours

    async def fork(self, spec: dict[str, Any], fds: list[int]) -> None:
        """Ask for one slot; its sockets are ``fds``."""
        for attempt in (1, 2):
            if self._process is None or self._process.returncode is not None:
                if self._process is not None:
                    _log.warning("the kernel zygote exited (status %s); starting another", self._process.returncode)
                await self.stop()
                await self.start()
            try:
                socket.send_fds(cast(socket.socket, self._socket), [json.dumps(spec).encode()], fds)  # start() set it
                return
            except OSError:
                if attempt == 2:
                    raise
                # start() set self._process
                if cast(asyncio.subprocess.Process, self._process).returncode is None:  # alive but not listening
                    cast(asyncio.subprocess.Process, self._process).kill()  # replace it
                    await cast(asyncio.subprocess.Process, self._process).wait()

    async def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()  # the zygote reads end of file and exits
            self._socket = None
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


def kill_group(pid: int) -> None:
    """Kill process ``pid``, its group and every descendant (some may have left the group), and
    wait until they are gone."""
    import psutil

    try:
        processes = [psutil.Process(pid)]
    except psutil.Error:
        processes = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _kill_descendants(pid, processes)


def _kill_descendants(pid: int, processes: list[Any] | None = None) -> None:
    """Kill every descendant of ``pid`` (and ``processes``); wait until they are gone."""
    import psutil

    processes = list(processes or [])
    try:
        processes += psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        pass
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)
