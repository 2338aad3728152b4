"""A worker started from a notebook, for single-user mode (one machine, no separate service).

In the hub the operator runs the workers; on a laptop the tenant is also the operator, so a
notebook may start one in the background: ``worker = wb.scheduler.start_worker()`` ...
``worker.stop()``. It is the same ``workbench worker`` command, in its own process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from workbench._home import home


class LocalWorker:
    """A ``workbench worker`` child process; its log goes to ``home()/worker.log``."""

    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """Stop after the runs in progress (SIGTERM, then SIGKILL after ``timeout``); the exit status."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited ({self.process.returncode})"
        return f"LocalWorker(pid={self.process.pid}, {state}, log={str(self.log)!r})"


def start_worker(*options: str) -> LocalWorker:
    """Start ``workbench worker`` with ``options`` (e.g. ``"--concurrency", "2"``) in the background."""
    log = home() / "worker.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "worker", "--verbose", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return LocalWorker(process, log)
