"""One run's processes: the slot (papermill's side) and the kernel it forks, both as the tenant.

The zygote forks a slot before its run is known. The slot takes fd 1 and 2 (its log, which
the worker reads) and fd 3 (its control socket to the worker) and closes every other fd,
the zygote's socket included; starts a process group of its own; moves itself into the run's
cgroup (``run_cgroups``) while still root, so that everything the run starts, however it
forks or detaches (``setsid``), stays in it and is killed with it (``kill_cgroup``); gives
itself a private folder for the kernel (``_private_folder``); drops to the tenant's unix
account when the worker runs as root; takes the tenant's environment from the worker; forks
the kernel (ipykernel, on ipc sockets in that folder: no TCP port another local user could
reach) and reports ``ready``.

Containment, as root: the cgroup (v2, below the worker's own) holds the run; without a
writable cgroup v2 with ``cgroup.kill`` the worker falls back to killing the slot's process
group and its descendants, which a process that double-forks and calls ``setsid`` escapes
(the worker says so in its log). The kernel's folder (connection file with the HMAC key,
ipc sockets, IPython and Jupyter folders, the input notebook) is a tmpfs mounted in the
slot's own mount namespace: no other process sees it, not even an earlier run of the same
tenant (same uid), and the kernel is not ptrace-able by it (a process that changed its uid
without exec is not dumpable).

Then it waits for one order, exiting if the worker's socket closes and reporting ``failed``
if its kernel dies meanwhile. Given the order, it arms the kernel for the run
(``_keys.arm``: session, key hand-off socket and token), reports ``started``, and lets
papermill execute the notebook in that kernel (its stock engine: papermill hands ``km`` to
nbclient, which then starts no kernel of its own). It reports ``done`` and kills its process
group: the kernel and whatever the notebook started. One slot, one run, one kernel.

Messages to the worker, one JSON object a line: ``{"pid": pid}`` (first), ``{"ready": {"kernel": pid}}``,
``{"failed": reason}``, ``{"started": unix time}``, ``{"done": {"code": c, "error": text}}``
with code 0 (succeeded), 1 (a cell raised: the output notebook says which) or 2 (the run
failed outside its cells, e.g. the kernel died; ``error`` says how).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

CONTROL_FD = 3
PRIVATE = "kernel"  # the slot folder's entry on which the kernel's private tmpfs is mounted
_CGROUP_PARENT = "workbench-runs"
_CGROUP_GONE = 5.0  # seconds a killed cgroup may take to empty
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 1 << 14, 1 << 18
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_PRIVATE_SIZE = "64m"
_READY_TIMEOUT = 60.0
_ARM_TIMEOUT = 30.0
_POLL = 1.0  # seconds between checks that the waiting kernel is alive


class _Forked:
    """The forked kernel as jupyter_client's ``LocalProvisioner`` expects a ``Popen``."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def main(fds: list[int], spec: dict[str, Any]) -> int:
    """A slot's whole life, in a fresh child of the zygote; its exit status."""
    _take_fds(*fds)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it; this process waits for its kernel
    slot = _Slot(socket.socket(fileno=CONTROL_FD))
    try:
        slot.send({"pid": os.getpid()})  # the worker kills the slot's process group by this id
        if spec.get("cgroup"):
            (Path(spec["cgroup"]) / "cgroup.procs").write_text(str(os.getpid()))
        if spec.get("uid") is not None:
            _private_folder(Path(spec["folder"]) / PRIVATE, spec["uid"], spec["gid"])
            os.setgroups([])
            os.setgid(spec["gid"])
            os.setuid(spec["uid"])
        return slot.serve()
    except BaseException:  # noqa: BLE001 - said in the log, which the worker reads
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.killpg(0, signal.SIGKILL)  # the kernel and anything it started, then this process


def run_cgroups() -> Path | None:
    """The folder of the runs' cgroups: a cgroup v2 below this process's own, or None where this
    process may not make one that can be killed whole (not root, no cgroup2, no ``cgroup.kill``)."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
        mount = next(line.split()[4] for line in mounts if line.split(" - ")[1].split()[0] == "cgroup2")
        parent = Path(mount) / own.lstrip("/") / _CGROUP_PARENT
        parent.mkdir(exist_ok=True)
    except (OSError, StopIteration, IndexError):
        return None
    return parent if (parent / "cgroup.kill").exists() else None


def kill_cgroup(cgroup: Path) -> None:
    """Kill every process of a run's cgroup at once, wait until it is empty, remove it."""
    try:
        (cgroup / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + _CGROUP_GONE
        while "populated 1" in (cgroup / "cgroup.events").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        cgroup.rmdir()
    except FileNotFoundError:
        pass  # removed already (the worker and, when the worker died, the zygote both clean up)
    except OSError as exc:
        logging.getLogger("workbench.scheduler").warning("run cgroup %s not removed: %s", cgroup, exc)


def _private_folder(folder: Path, uid: int, gid: int) -> None:
    """Mount a tmpfs of the tenant's on ``folder`` (the worker's empty 0700 folder) in a mount
    namespace of this slot's own: it and its kernel see it, no process outside does."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) or libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None):
        error = ctypes.get_errno()
        raise OSError(error, f"no private mount namespace for the kernel: {os.strerror(error)}")
    options = f"mode=0700,uid={uid},gid={gid},size={_PRIVATE_SIZE}".encode()
    if libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options):
        error = ctypes.get_errno()
        raise OSError(error, f"no private folder for the kernel: {os.strerror(error)}")


def _take_fds(control: int, log: int) -> None:
    """fd 0 reads nothing, 1 and 2 are the log, 3 the control socket; every other fd closed."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(control, CONTROL_FD)
    os.closerange(CONTROL_FD + 1, os.sysconf("SC_OPEN_MAX"))


class _Slot:
    def __init__(self, control: socket.socket):
        self._control = control
        self._buffer = bytearray()

    def serve(self) -> int:
        setup = self._receive()
        if setup is None:
            return 0
        os.environ.clear()
        os.environ.update(setup["env"])
        os.chdir(setup["folder"])
        os.umask(0o077)
        private = Path(setup["private"])
        kernel, connection_file = _fork_kernel(private)
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=_READY_TIMEOUT)
        except RuntimeError as exc:
            self.send({"failed": f"the kernel did not start: {exc}"})
            return 1
        self.send({"ready": {"kernel": kernel.pid}})
        order = self._receive(kernel)
        if order is None or not self._alive(kernel):
            return 0
        threading.Thread(target=self._watch_worker, name="worker-watch", daemon=True).start()
        _arm(client, order["arm"], kernel)
        client.stop_channels()
        self.send({"started": time.time()})
        code, error = _execute(_manager(connection_file, kernel), order, private)
        kernel.kill()
        self.send({"done": {"code": code, "error": error}})
        return 0

    def _receive(self, kernel: _Forked | None = None) -> dict[str, Any] | None:
        """The worker's next message; None when the worker is gone or, while ``kernel``
        waits for its run, when the kernel died (reported as ``failed``)."""
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if kernel is not None and not select.select([self._control], [], [], _POLL)[0]:
                if not self._alive(kernel):
                    return None
                continue
            chunk = self._control.recv(1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return json.loads(line)

    def _alive(self, kernel: _Forked) -> bool:
        """Whether the waiting kernel still runs; if not, the worker hears that it is lost."""
        if kernel.poll() is None:
            return True
        self.send({"failed": f"the warm kernel exited (status {kernel.returncode}) before its run"})
        return False

    def send(self, message: dict[str, Any]) -> None:
        self._control.sendall(json.dumps(message).encode() + b"\n")

    def _watch_worker(self) -> None:
        """During the run: if the worker goes away, so does the run (no orphan keeps trading)."""
        while self._control.recv(4096):
            pass
        os.killpg(0, signal.SIGKILL)


def _fork_kernel(folder: Path) -> tuple[_Forked, str]:
    """Fork this process into an IPython kernel listening on ipc sockets inside ``folder``."""
    from jupyter_client.connect import write_connection_file

    connection_file, _ = write_connection_file(str(folder / "kernel.json"), transport="ipc", ip=str(folder / "kernel"))
    slot = os.getpid()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(CONTROL_FD)  # the kernel runs tenant code: it must not talk to the worker
            _kernel(connection_file, slot)
            status = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(status)
    return _Forked(pid), connection_file


def _kernel(connection_file: str, slot: int) -> None:
    import numpy as np
    from ipykernel.kernelapp import IPKernelApp

    np.random.seed()  # the zygote's global RandomState is every fork's: this run gets its own
    sys.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file]
    IPKernelApp.launch_instance(
        argv=["-f", connection_file, f"--IPKernelApp.parent_handle={slot}", "--HistoryManager.hist_file=:memory:"]
    )


def _arm(client: Any, arm: list[Any], kernel: _Forked) -> None:
    """Install the run's vault in the kernel; nothing enters the tenant's namespace or history."""
    code = f"__import__('workbench.scheduler._keys', fromlist=['arm']).arm(*{arm!r})"
    msg_id = client.execute(code, silent=True, store_history=False)
    deadline = time.monotonic() + _ARM_TIMEOUT
    while True:
        try:
            reply = client.get_shell_msg(timeout=_POLL)
        except queue.Empty:
            if kernel.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the kernel did not answer when armed for its run") from None
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if reply["content"]["status"] != "ok":
        raise RuntimeError(
            f"the kernel could not be armed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}"
        )


def _manager(connection_file: str, kernel: _Forked) -> Any:
    """A kernel manager for the already running kernel, for papermill (and nbclient) to use."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner

    manager = AsyncKernelManager(connection_file=connection_file, kernel_name="python3")
    manager.load_connection_file()
    provisioner = LocalProvisioner(kernel_id=manager.kernel_id, kernel_spec=None, parent=manager)
    # no pgid: signals go to the kernel only; jupyter_client types process as a Popen, but only calls
    # the poll/wait/send_signal/kill that _Forked has
    provisioner.process, provisioner.pid = kernel, kernel.pid  # type: ignore[assignment]
    manager.provisioner = provisioner
    return manager


def _execute(manager: Any, order: dict[str, Any], private: Path) -> tuple[int, str | None]:
    """Run the order's notebook (written to ``input.ipynb`` in the kernel's private folder) into
    ``output.ipynb`` in the slot's work folder (the current directory), which the worker reads."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = private / "input.ipynb"
    notebook.write_text(order["notebook"], encoding="utf-8")
    try:
        papermill.execute_notebook(
            str(notebook),
            "output.ipynb",
            parameters=order["parameters"],
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            km=manager,
        )
    except PapermillExecutionError:
        return 1, None
    except Exception as exc:  # noqa: BLE001 - e.g. the kernel died: the run failed outside its cells
        traceback.print_exc()
        return 2, f"{type(exc).__name__}: {exc}"
    return 0, None
