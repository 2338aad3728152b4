"""The job queue: procrastinate on the workbench's own PostgreSQL, in schema ``procrastinate``.

One task, ``workbench:run_notebook(run_id)``. A job carries only the run's id; everything else
(which notebook, as whom) is read from the database by the worker that takes it. Each job of
a session has ``lock`` and ``queueing_lock`` ``session:<id>``: procrastinate starts no job
while another with the same lock is being worked on (one run of a session at a time), and
keeps at most one job per session waiting (a slow session is not buried under a backlog).
"""
from __future__ import annotations

import procrastinate
from procrastinate import PsycopgConnector
from sqlalchemy import make_url

from workbench import store

QUEUE = "live"
NAMESPACE = "workbench"
TASK = f"{NAMESPACE}:run_notebook"
SCHEMA = "procrastinate"

blueprint = procrastinate.Blueprint()


@blueprint.task(name="run_notebook", queue=QUEUE, pass_context=True)
async def run_notebook(context: procrastinate.JobContext, run_id: int) -> None:
    """Execute run ``run_id`` in a kernel of the worker's pool (``additional_context["pool"]``);
    its outcome is recorded on the run, so the job itself fails only when the worker could not
    do its part (never because the notebook failed)."""
    from workbench.scheduler._execute import execute_run

    await execute_run(run_id, worker=f"{context.worker_name}/job {context.job.id}",
                      pool=context.additional_context["pool"])


def session_lock(session_id: int) -> str:
    """The procrastinate lock (and queueing lock) of a trading session's runs."""
    return f"session:{session_id}"


def libpq_url(url: str | None = None) -> str:
    """The owner URL (default: the configured one) as a libpq URI for psycopg."""
    return make_url(url or store.database_url()).set(drivername="postgresql").render_as_string(
        hide_password=False)


def queue_app(url: str | None = None, pool_size: int = 4) -> procrastinate.App:
    """A procrastinate App connected as the owner to the workbench database.

    Once per process: procrastinate namespaces the blueprint's tasks in place, so a second App
    would register them under ``workbench:workbench:...``. The App can be opened again after
    its connection was lost.
    """
    connector = PsycopgConnector(conninfo=libpq_url(url), min_size=1, max_size=pool_size,
                                 kwargs={"options": f"-c search_path={SCHEMA}"})
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(blueprint, namespace=NAMESPACE)
    return app
