"""The scheduler's task on the job queue (``workbench.jobs``): ``workbench:run_notebook(run_id)``.

A job carries only the run's id; everything else (which notebook, as whom) is read from the
database by the worker that takes it. Each job of a session has ``lock`` and
``queueing_lock`` ``session:<id>``: procrastinate starts no job while another with the same
lock is being worked on (one run of a session at a time), and keeps at most one job per
session waiting (a slow session is not buried under a backlog).
"""

from __future__ import annotations

import procrastinate

from workbench.jobs import NAMESPACE, QUEUE, blueprint

TASK = f"{NAMESPACE}:run_notebook"


@blueprint.task(name="run_notebook", queue=QUEUE, pass_context=True)
async def run_notebook(context: procrastinate.JobContext, run_id: int) -> None:
    """Execute run ``run_id`` in a kernel of the worker's pool (``additional_context["pool"]``);
    its outcome is recorded on the run, so the job itself fails only when the worker could not
    do its part (never because the notebook failed)."""
    from workbench.scheduler._execute import Fence, execute_run

    extra = context.additional_context
    await execute_run(
        run_id,
        worker=f"{context.worker_name}/job {context.job.id}",
        pool=extra["pool"],
        fence=Fence(context.job.id, extra["stalled_after"], extra.get("rejoin"))
        if extra.get("stalled_after") and context.job.id is not None
        else None,
    )


def session_lock(session_id: int) -> str:
    """The procrastinate lock (and queueing lock) of a trading session's runs."""
    return f"session:{session_id}"
