"""The run process: papermill executes the frozen notebook in a fresh kernel, headless.

Started by the worker as ``python -m workbench.scheduler._runner INPUT OUTPUT PARAMETERS``
with the tenant's environment (tenant database URL, no owner URL, no master key), as the
tenant's unix account when there is one. It prints one JSON line of timestamps for the
run's breakdown. If the worker dies, this process kills its kernel and exits within a
second, so an abandoned run never trades next to the run that replaces it.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

PARENT_ENV = "WORKBENCH_RUN_PARENT"
_POLL = 0.5


def _kill_tree() -> None:
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def _watch_parent(parent: int) -> None:
    """Exit (kernel included) as soon as the worker that started this process is gone."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                _kill_tree()
                os._exit(3)
            time.sleep(_POLL)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    started = time.time()
    _watch_parent(int(os.environ.pop(PARENT_ENV)))
    source, output, parameters = argv[0], argv[1], json.loads(argv[2])
    import papermill
    from papermill.exceptions import PapermillExecutionError

    print(json.dumps({"runner_started": started, "papermill_ready": time.time()}), flush=True)
    try:
        papermill.execute_notebook(source, output, parameters=parameters, kernel_name="python3",
                                   progress_bar=False, log_output=False, cwd=os.getcwd(), start_timeout=120,
                                   shutdown_kernel="immediate")  # the run's state is committed by now
    except PapermillExecutionError:
        return 1  # the output notebook holds the failing cell and its traceback
    finally:
        _kill_tree()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
