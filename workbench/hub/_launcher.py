"""The product's one command: everything the hub needs, started in order, stopped on Ctrl-C.

``workbench hub`` (what ``python3 dev.py run`` runs):

1. the embedded PostgreSQL (unless ``DATABASE_URL`` names a server), migrated to head;
2. the master key (generated 0600 in the data directory on the first run);
3. on the first run only: an admin and two demo tenants with sample strategies and a paper
   session; their passwords are printed once and kept 0600 in ``<home>/hub/credentials``;
4. JupyterHub, which starts the proxy and the workbench service itself; and the job queue's
   worker (``workbench worker``) when the scheduler is installed.

Ctrl-C (or SIGTERM) stops the worker, then the hub (which stops the tenants' servers, the
service and the proxy), then the embedded PostgreSQL. Running it again reuses all state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from workbench import store
from workbench.errors import HubError
from workbench.hub import _demo
from workbench.hub._settings import Settings, bin_path
from workbench.vault import _keyring

CONFIG_ENV = "WORKBENCH_HUB_CONFIG"
_REPO_CONFIG = Path(__file__).resolve().parents[2] / "hub_config" / "jupyterhub_config.py"
_READY_TIMEOUT = 120.0
_STOP_TIMEOUT = 30.0


def _say(message: str) -> None:
    print(f"[workbench hub] {message}", flush=True)


def config_file() -> Path:
    path = Path(os.environ.get(CONFIG_ENV) or _REPO_CONFIG)
    if not path.is_file():
        raise HubError(f"the JupyterHub configuration {path} is missing; set {CONFIG_ENV}")
    return path


def prepare(settings: Settings) -> dict[str, str] | None:
    """Database up and migrated, master key present, first-run accounts seeded (their passwords)."""
    store.database_url()  # starts the embedded server when no DATABASE_URL is set
    if store.current_revision() != store.head_revision():
        _say("migrating the database")
        store.upgrade()
    _keyring.load()  # generates <home>/master.key on the first run
    return _demo.seed(settings)


@dataclass
class Processes:
    """The hub and the worker, as started by ``start``."""

    hub: subprocess.Popen
    worker: subprocess.Popen | None = None
    logs: list = field(default_factory=list)

    def stop(self) -> None:
        """SIGTERM to both, then wait; JupyterHub stops tenants' servers, service and proxy.
        Whatever has not ended in time is killed with its children."""
        running = [p for p in (self.worker, self.hub) if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_tree(process.pid)
                process.wait()
        for log in self.logs:
            log.close()


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _refuse_second_instance(settings: Settings) -> None:
    """Two hubs on one data directory would share (and stop) one database: refuse the second."""
    pid_file = settings.hub_dir / "jupyterhub.pid"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pid_file.read_text().strip())
        if psutil.pid_exists(pid) and "jupyterhub" in " ".join(psutil.Process(pid).cmdline()):
            raise HubError(f"a hub (pid {pid}) already runs on {settings.home}; stop it first")
    with socket.socket() as probe:
        if probe.connect_ex((settings.ip, settings.port)) == 0:
            raise HubError(f"port {settings.port} on {settings.ip} is taken; set WORKBENCH_HUB_PORT to another port")


def start(settings: Settings, *, worker: bool = True, log_dir: Path | None = None) -> Processes:
    """Start JupyterHub (and the worker); returns once the hub answers on its public URL.
    Output goes to the terminal, or to ``hub.log``/``worker.log`` in ``log_dir``."""
    _refuse_second_instance(settings)
    env = {
        **os.environ,
        "WORKBENCH_HOME": str(settings.home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    logs = [open(log_dir / name, "ab") for name in ("hub.log", "worker.log")] if log_dir else [None, None]
    hub = subprocess.Popen(
        [bin_path("jupyterhub"), "-f", str(config_file())],
        cwd=settings.hub_dir,
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT if log_dir else None,
        start_new_session=True,
    )
    processes = Processes(hub, logs=[log for log in logs if log])
    if worker and _has_worker():
        processes.worker = subprocess.Popen(
            [bin_path("workbench"), "worker"],
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT if log_dir else None,
            start_new_session=True,
        )
    try:
        _wait_ready(settings, hub)
    except BaseException:
        processes.stop()
        raise
    return processes


def run(settings: Settings | None = None, *, worker: bool = True) -> int:
    """``workbench hub``: prepare, start, wait for Ctrl-C or SIGTERM, stop everything."""
    settings = settings or Settings.from_env()
    _say(f"state in {settings.home}")
    _refuse_second_instance(settings)
    passwords = prepare(settings)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _interrupt)
    processes = start(settings, worker=worker)
    _announce(settings, passwords, processes, worker)
    try:
        while processes.hub.poll() is None and (processes.worker is None or processes.worker.poll() is None):
            time.sleep(0.5)
        _say("a process ended on its own; stopping the rest")
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        processes.stop()
        if not any(os.environ.get(v) for v in ("WORKBENCH_DATABASE_URL", "DATABASE_URL")):
            store.embedded_server().stop()
        _say("stopped")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops like Ctrl-C (and Ctrl-C works even where a shell started us ignoring it)."""
    raise KeyboardInterrupt


def _announce(settings: Settings, passwords: dict[str, str] | None, processes: Processes, worker: bool = True) -> None:
    lines = [f"JupyterHub is running at {settings.public_url}/  (Ctrl-C stops it)"]
    if passwords:
        lines.append(
            "first run: these accounts were created (shown once; also in "
            f"{_demo.credentials_file(settings)}, readable by this account only):"
        )
        lines += [
            f"    {name:<8} {password}{'   (admin: approves sign-ups at /hub/authorize)' if name in settings.admins else ''}"
            for name, password in passwords.items()
        ]
    else:
        lines.append(f"accounts of the first run: see {_demo.credentials_file(settings)}")
    lines.append(
        "worker: running"
        if processes.worker
        else "worker: not started (--no-worker): run `workbench worker` on this or other machines"
        if not worker
        else "worker: not started (the scheduler is not installed)"
    )
    if settings.spawner == "simple":
        lines.append("WARNING: not root, so all tenants' servers share one unix account: file isolation is OFF")
    for line in lines:
        _say(line)


def _has_worker() -> bool:
    """Whether this installation has the scheduler's ``workbench worker`` command."""
    result = subprocess.run([bin_path("workbench"), "worker", "--help"], capture_output=True, check=False)
    return result.returncode == 0


def _wait_ready(settings: Settings, hub: subprocess.Popen) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise HubError(f"JupyterHub exited with status {hub.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{settings.public_url}/hub/api", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise HubError(f"JupyterHub did not answer on {settings.public_url} within {_READY_TIMEOUT:.0f} s")
