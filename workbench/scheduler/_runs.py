"""A session's run history, as the tenant sees it (row-level security applies)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from workbench import store
from workbench.errors import SchedulerError
from workbench.store.models import LiveNotebook, NotebookRun

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COLUMNS = [
    "run",
    "version",
    "scheduled_for",
    "started_at",
    "finished_at",
    "status",
    "error",
    "failing_cell",
    "output_path",
    "timings",
]
FINISHED = ("succeeded", "failed")


def runs(session: int, limit: int = 20) -> pd.DataFrame:
    """The session's latest runs, newest first."""
    import pandas as pd

    query = (
        select(NotebookRun, LiveNotebook.version)
        .join(
            LiveNotebook,
            (LiveNotebook.tenant_id == NotebookRun.tenant_id) & (LiveNotebook.id == NotebookRun.live_notebook_id),
        )
        .where(LiveNotebook.session_id == int(session))
        .order_by(NotebookRun.scheduled_for.desc(), NotebookRun.id.desc())
        .limit(limit)
    )
    with store.session() as db:
        rows = [
            (
                r.id,
                version,
                r.scheduled_for,
                r.started_at,
                r.finished_at,
                r.status,
                r.error,
                r.failing_cell,
                r.output_path,
                r.timings,
            )
            for r, version in db.execute(query)
        ]
    return pd.DataFrame(rows, columns=COLUMNS).set_index("run")


def wait_for_runs(session: int, count: int = 1, timeout: float = 120.0) -> pd.DataFrame:
    """Block until the session has ``count`` finished runs (succeeded or failed); its runs."""
    deadline = time.monotonic() + timeout
    while True:
        table = runs(session, limit=max(count, 20))
        if table["status"].isin(FINISHED).sum() >= count:
            return table
        if time.monotonic() > deadline:
            raise SchedulerError(
                f"session #{session} has {int(table['status'].isin(FINISHED).sum())} finished "
                f"runs after {timeout:g} s, not {count}; is a worker running "
                f"(`workbench worker`)?"
            )
        time.sleep(0.5)
