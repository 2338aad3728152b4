"""Scheduled headless runs of promoted notebooks on the procrastinate job queue.

From a notebook (as the tenant)::

    import workbench as wb

    wb.promote("live/paper_channel.ipynb", session=3, schedule="candle:5m")  # freeze + schedule
    wb.promote_button("live/paper_channel.ipynb", session=3)                # the same, as a button
    wb.scheduler.live_notebooks()        # what is live, next run, last run
    wb.scheduler.runs(3)                 # the session's runs: status, times, error, output notebook
    wb.scheduler.pause(3); wb.scheduler.resume(3); wb.scheduler.run_now(3)
    wb.demote(3)                         # no longer live (the session keeps its state)
    wb.scheduler.stop(3)                 # demote and stop the trading session
    wb.dashboard(3)                      # the session's live dashboard (also served by Voila)

On the trusted side, ``workbench worker`` runs one worker (dispatcher + runs + warm kernels);
start as many as needed, on any machine that reaches the database. How a run executes:
``_dispatch`` (due runs -> jobs), ``_execute`` (the worker's side), ``_pool`` (the worker's
warm kernels, forked by ``_zygote``), ``_slot`` (one run's processes: papermill and its
kernel, as the tenant), ``_keys`` (exchange keys handed to the run in memory), ``_schedule``
(cron and candle schedules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import from_modules, lazy_exports

_MODULES = {
    "workbench.scheduler._promote": [
        "INJECTED",
        "LiveStatus",
        "check_notebook",
        "demote",
        "live_notebooks",
        "pause",
        "promote",
        "resume",
        "run_now",
        "stop",
    ],
    "workbench.scheduler._runs": ["runs", "wait_for_runs"],
    "workbench.scheduler._schedule": ["Schedule", "parse_schedule"],
    "workbench.scheduler._worker": ["WorkerOptions", "run_worker"],
    "workbench.scheduler._local": ["LocalWorker", "start_worker"],
    "workbench.scheduler._button": ["promote_button"],
    "workbench.scheduler._dashboard": ["dashboard", "dashboard_page", "serve_dashboard"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules(_MODULES))

if TYPE_CHECKING:  # pragma: no cover
    from workbench.scheduler._button import promote_button
    from workbench.scheduler._dashboard import dashboard, dashboard_page, serve_dashboard
    from workbench.scheduler._local import LocalWorker, start_worker
    from workbench.scheduler._promote import (
        INJECTED,
        LiveStatus,
        check_notebook,
        demote,
        live_notebooks,
        pause,
        promote,
        resume,
        run_now,
        stop,
    )
    from workbench.scheduler._runs import runs, wait_for_runs
    from workbench.scheduler._schedule import Schedule, parse_schedule
    from workbench.scheduler._worker import WorkerOptions, run_worker
