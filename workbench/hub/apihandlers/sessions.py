"""The caller's trading sessions, their live notebooks (schedules) and the notebooks' runs,
read and changed through the scheduler's own functions, connected as the caller.

JSON API (under ``/services/workbench/api``)::

    GET    sessions, sessions/<id>              trading sessions (with their dashboard and shares)
    GET    live?session=<id>, live/<id>         promoted notebooks (schedules)
    POST   sessions/<id>/(pause|resume|run_now|demote|stop)   change the session's live notebook
    GET    runs?live=<id>&session=<id>&limit=N, runs/<id>
"""

from __future__ import annotations

from tornado import web

from workbench.hub import _records
from workbench.hub.apihandlers.base import ID, APIHandler


class SessionsHandler(APIHandler):
    async def get(self, session_id: str | None = None) -> None:
        if session_id is None:
            self.answer(await self.call(_records.sessions, self.tenant))
        else:
            self.answer(await self.call(_records.session, self.tenant, int(session_id)))


class LiveHandler(APIHandler):
    async def get(self, live_id: str | None = None) -> None:
        if live_id is None:
            session = self.get_argument("session", None)
            self.answer(
                await self.call(
                    _records.live_notebooks, self.tenant, int(session) if session and session.isdigit() else None
                )
            )
        else:
            self.answer(await self.call(_records.live_notebook, self.tenant, int(live_id)))


class ScheduleHandler(APIHandler):
    """Pause, resume, run now, demote or stop the live notebook of one of the caller's sessions
    (the scheduler's own functions, connected as the caller)."""

    async def post(self, session_id: str, action: str) -> None:
        self.answer(await self.call(_records.change_schedule, self.tenant, int(session_id), action))


class RunsHandler(APIHandler):
    async def get(self, run_id: str | None = None) -> None:
        if run_id is not None:
            self.answer(await self.call(_records.run, self.tenant, int(run_id)))
            return
        numbers = {}
        for name in ("live", "session", "limit"):
            raw = self.get_argument(name, None)
            if raw is not None and not raw.isdigit():
                raise web.HTTPError(400, f"query parameter {name}={raw!r} is not a positive integer")
            numbers[name] = int(raw) if raw is not None else None
        self.answer(
            await self.call(_records.runs, self.tenant, numbers["live"], numbers["session"], numbers["limit"] or 50)
        )


default_handlers = [
    ("/api/sessions", SessionsHandler),
    (f"/api/sessions/{ID}", SessionsHandler),
    ("/api/live", LiveHandler),
    (f"/api/live/{ID}", LiveHandler),
    (f"/api/sessions/{ID}/(pause|resume|run_now|demote|stop)", ScheduleHandler),
    ("/api/runs", RunsHandler),
    (f"/api/runs/{ID}", RunsHandler),
]
