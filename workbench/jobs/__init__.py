"""The job queue the workers serve: procrastinate on the workbench's own PostgreSQL, in
schema ``procrastinate`` (created by the store's migrations).

Every package that queues work registers its tasks on the one ``blueprint`` here, under the
``workbench`` namespace: ``workbench.scheduler`` its ``run_notebook`` (a live notebook's
scheduled run), ``workbench.notify`` its ``deliver_notifications``. A worker imports those
packages, then opens the App once with ``queue_app()``, which serves them all. A job carries
only ids; what it works on is read from the database by the worker that takes it.
"""

from __future__ import annotations

import procrastinate
from procrastinate import PsycopgConnector
from sqlalchemy import make_url

from workbench import store

QUEUE = "live"
NAMESPACE = "workbench"
SCHEMA = "procrastinate"

blueprint = procrastinate.Blueprint()


def libpq_url(url: str | None = None) -> str:
    """The owner URL (default: the configured one) as a libpq URI for psycopg."""
    return make_url(url or store.database_url()).set(drivername="postgresql").render_as_string(hide_password=False)


def queue_app(url: str | None = None, pool_size: int = 4) -> procrastinate.App:
    """A procrastinate App connected as the owner to the workbench database, serving every task
    registered on ``blueprint``.

    Once per process: procrastinate namespaces the blueprint's tasks in place, so a second App
    would register them under ``workbench:workbench:...``. The App can be opened again after
    its connection was lost.
    """
    connector = PsycopgConnector(
        conninfo=libpq_url(url), min_size=1, max_size=pool_size, kwargs={"options": f"-c search_path={SCHEMA}"}
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(blueprint, namespace=NAMESPACE)
    return app
