"""Dashboards: the caller's own (a Voila server), shares with other tenants, and the page of a
session shared with the caller.

JSON API (under ``/services/workbench/api``)::

    POST   dashboards/<session id>              start the caller's own dashboard server: {url}
    GET    dashboards/<session id>/shares       tenants the session is shared with
    POST   dashboards/<session id>/shares       {user}: share the session read-only
    DELETE dashboards/<session id>/shares/<user>   revoke (the viewer's next reload finds nothing)
    GET    shared                               sessions others shared with the caller: [{owner, session, url}]
    POST   shared/<owner>/<session id>          the page of a session shared with the caller: {url}

Shared dashboards (``GET /services/workbench/shared/<owner>/<session id>``, an HTML page) are
rendered here, for the viewer, from the rows the viewer's own database role may read
(``dashboard_shares`` and the policies of revision 0011): no process of the owner is involved,
so nothing the owner controls reaches the viewer's browser on the hub's origin. Tenant strings
are escaped, and the page's Content-Security-Policy runs only scripts carrying its nonce
(BokehJS, served from the package under ``static/bokeh/``, and the chart). The owner's own
dashboard is still Voila in the owner's named server ``dash-<session id>``, which only the
owner can reach.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from jupyterhub.utils import url_path_join
from tornado import web

from workbench import store
from workbench.errors import HubError
from workbench.hub import _records
from workbench.hub._hubapi import HubAPI
from workbench.hub._spawner import dashboard_server_name
from workbench.hub.apihandlers.base import ID, APIHandler, PageHandler, log, text

BOKEH_STATIC = "static/bokeh"  # BokehJS as the bokeh package ships it, served by the service itself
_BOKEH_JS = f"{BOKEH_STATIC}/bokeh.min.js"
_SHARE_FIELDS = {"user": text(64, True)}


class _DashboardHandler(APIHandler):
    @property
    def hub(self) -> HubAPI:
        return self.application.settings["hub_api"]

    async def own_dashboard(self, session_id: str) -> str:
        """The caller's dashboard server name for ``session_id``; 404 unless the session is theirs."""
        await self.call(_records.session, self.tenant, int(session_id))
        return dashboard_server_name(int(session_id))

    async def hub_call(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except HubError as exc:
            log.warning("%s", exc)
            raise web.HTTPError(502, str(exc)) from None

    def server_url(self, owner: str, server: str) -> str:
        return url_path_join(self.application.settings["hub_prefix"], "user", owner, server) + "/"

    def shared_url(self, owner: str, session_id: int | str) -> str:
        return url_path_join(self.application.settings["service_prefix"], "shared", owner, str(int(session_id)))


class DashboardHandler(_DashboardHandler):
    async def post(self, session_id: str) -> None:
        server = await self.own_dashboard(session_id)
        await self.hub_call(self.hub.start_server(self.tenant, server))
        self.answer({"url": self.server_url(self.tenant, server), "server": server})


class SharesHandler(_DashboardHandler):
    async def get(self, session_id: str) -> None:
        self.answer(await self.call(_records.shares, self.tenant, int(session_id)))

    async def post(self, session_id: str) -> None:
        viewer = self.body(_SHARE_FIELDS)["user"]
        if viewer == self.tenant:
            raise web.HTTPError(400, "field 'user' must name another tenant")
        await self.call(_records.share, self.tenant, int(session_id), viewer)
        log.info("%s shared session %s with %s", self.tenant, session_id, viewer)
        self.answer({"url": self.shared_url(self.tenant, session_id), "shared_with": viewer}, 201)


class ShareHandler(_DashboardHandler):
    async def delete(self, session_id: str, viewer: str) -> None:
        await self.call(_records.unshare, self.tenant, int(session_id), viewer)
        log.info("%s revoked session %s from %s", self.tenant, session_id, viewer)
        self.answer({"revoked": viewer})


class SharedHandler(_DashboardHandler):
    async def get(self) -> None:
        shared = await self.call(_records.shared_with, self.tenant)
        self.answer([{**item, "url": self.shared_url(item["owner"], item["session"])} for item in shared])

    async def post(self, owner: str, session_id: str) -> None:
        await self.call(_records.shared_owner_id, self.tenant, owner, int(session_id))
        self.answer({"url": self.shared_url(owner, session_id)})


class SharedPageHandler(PageHandler):
    """A session shared with the caller, rendered from what the caller's own role may read."""

    @web.authenticated
    async def get(self, owner: str, session_id: str) -> None:
        viewer = self.tenant
        owner_id = await self.call(_records.shared_owner_id, viewer, owner, int(session_id))
        self.page_policy()
        bokeh = url_path_join(self.application.settings["service_prefix"], _BOKEH_JS)
        from workbench.scheduler import dashboard_page

        page = await self.call(
            lambda: dashboard_page(
                int(session_id),
                opener=lambda: store.tenant_session(viewer),
                owner_id=owner_id,
                nonce=self.nonce,
                bokeh_url=bokeh,
            )
        )
        if page is None:
            raise web.HTTPError(404, f"{owner!r} shares no session {session_id} with you")
        self.finish(page)


default_handlers = [
    (f"/api/dashboards/{ID}", DashboardHandler),
    (f"/api/dashboards/{ID}/shares", SharesHandler),
    (f"/api/dashboards/{ID}/shares/([^/]+)", ShareHandler),
    ("/api/shared", SharedHandler),
    (f"/api/shared/([^/]+)/{ID}", SharedHandler),
    (f"/shared/([^/]+)/{ID}", SharedPageHandler),
]
