"""The workbench service: the trusted side a tenant's server talks to, behind JupyterHub OAuth.

JupyterHub starts it as a managed service (``/services/workbench/``) with the master key
and the database owner's URL, which tenants' servers never get. Every request is
authenticated by the hub (a browser's OAuth cookie, or a tenant server's own API token,
which ``jupyterhub_config.py`` grants ``access:services!service=workbench``) and acts for
the calling user only: the tenant is the token's user name, never a parameter.

JSON API (under ``/services/workbench/api``)::

    GET    vault/accounts                       the caller's exchange accounts (keys masked)
    POST   vault/accounts                       {exchange, api_key, secret, passphrase?, permissions, label}
    POST   vault/accounts/<id>/deactivate
    POST   vault/accounts/<id>/check            {ccxt_config?}: the exchange's non-zero balances
    DELETE vault/accounts/<id>
    GET    vault/accounts/<id>/keys             always 403: plaintext keys go to live runs only
    GET    sessions, sessions/<id>              trading sessions (with their dashboard and shares)
    GET    live?session=<id>, live/<id>         promoted notebooks (schedules)
    POST   sessions/<id>/(pause|resume|run_now|demote|stop)   change the session's live notebook
    GET    runs?live=<id>&session=<id>&limit=N, runs/<id>
    POST   dashboards/<session id>              start the session's dashboard server: {url}
    GET    dashboards/<session id>/shares       users it is shared with
    POST   dashboards/<session id>/shares       {user}: share read-only
    DELETE dashboards/<session id>/shares/<user>   revoke (open pages are cut off)
    GET    shared                               dashboards others shared with the caller
    POST   shared/<owner>/<session id>          start a dashboard shared with the caller: {url}
    GET    notify/channels                      the caller's notification channels (no secret)
    POST   notify/channels                      {kind, name, settings, events?, session?, rate_limit?}: {id}
    PATCH  notify/channels/<id>                 {events?, session?, enabled?, rate_limit?}
    POST   notify/channels/<id>/test            send a test message now: {sent}
    DELETE notify/channels/<id>

Another tenant's account, session, live notebook, run, dashboard or channel answers 404,
exactly like one that does not exist. Request bodies (keys, channel secrets) are never logged.

    python -m workbench.hub._service     # run by the hub (JUPYTERHUB_* set)
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from workbench.errors import HubError, NotifyError, VaultError, WorkbenchError
from workbench.hub import _records
from workbench.hub._hubapi import HubAPI
from workbench.hub._records import NotFound
from workbench.hub._spawner import dashboard_server_name
from workbench.vault import Secret

_log = logging.getLogger("workbench.hub.service")
_ID = r"(\d+)"
_ACCOUNT_FIELDS = {"exchange", "api_key", "secret", "passphrase", "permissions", "label"}
# ccxt options a tenant may pass to a connectivity check: no logger, no verbose, no keys, and
# nothing that moves the requests elsewhere (urls, hostname, proxies): the service signs them
# with the tenant's key, which must go to the exchange only, never to a host the tenant names
_CHECK_OPTIONS = {"timeout", "options"}
_CHANNEL_FIELDS = {"kind", "name", "settings", "events", "session", "rate_limit"}
_CHANNEL_CHANGES = {"events", "session", "enabled", "rate_limit"}


class _Handler(HubOAuthenticated, web.RequestHandler):
    """Base: the caller must be a hub *user*; errors are JSON ``{"error": ...}``."""

    @property
    def tenant(self) -> str:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in through the hub first")
        if user.get("kind") != "user":
            raise web.HTTPError(403, f"{user.get('kind')} {user.get('name')!r} is not a tenant")
        return user["name"]

    def prepare(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "log in through the hub first (or send a hub API token)")

    _authenticating = False

    def get_current_user(self) -> dict | None:
        self._authenticating = True
        try:
            return super().get_current_user()
        finally:
            self._authenticating = False

    def check_xsrf_cookie(self) -> None:
        """Tornado checks XSRF before ``prepare``; authenticate first, so that requests with a
        hub token (a tenant server's ServiceVault) are exempt and cookie requests are not.
        HubAuth calls back here while it authenticates a cookie: then no second authentication
        (it would wait for the very thread that is authenticating)."""
        if not self._authenticating:
            _ = self.current_user
        super().check_xsrf_cookie()

    def body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        if not isinstance(value, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return value

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run blocking store/vault code off the event loop; map its errors to HTTP."""
        try:
            return await asyncio.to_thread(function, *args)
        except NotFound as exc:
            raise web.HTTPError(404, str(exc)) from None
        except VaultError as exc:
            raise web.HTTPError(404 if "has no exchange account" in str(exc) else 400, str(exc)) from None
        except NotifyError as exc:
            raise web.HTTPError(404 if str(exc).startswith("no notification channel") else 400, str(exc)) from None
        except WorkbenchError as exc:
            raise web.HTTPError(400, str(exc)) from None

    def answer(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


class _VaultHandler(_Handler):
    def vault(self) -> Any:
        return self.application.settings["vaults"](self.tenant)


class AccountsHandler(_VaultHandler):
    async def get(self) -> None:
        accounts = await self.call(lambda: self.vault().accounts())
        self.answer([{**vars(a), "created_at": a.created_at.isoformat()} for a in accounts])

    async def post(self) -> None:
        body = self.body()
        unknown = set(body) - _ACCOUNT_FIELDS
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; expected {sorted(_ACCOUNT_FIELDS)}")
        for field in ("exchange", "api_key", "secret"):
            if not isinstance(body.get(field), str):
                raise web.HTTPError(400, f"field {field!r} is required (a string)")
        passphrase = body.get("passphrase")
        account_id = await self.call(lambda: self.vault().add_account(
            body["exchange"], Secret(body["api_key"]), Secret(body["secret"]),
            Secret(passphrase) if passphrase else None, body.get("permissions", "read"), body.get("label", "")))
        self.answer({"id": account_id}, 201)


class AccountHandler(_VaultHandler):
    async def delete(self, account_id: str) -> None:
        await self.call(lambda: self.vault().remove(int(account_id)))
        self.answer({"removed": int(account_id)})


class AccountActionHandler(_VaultHandler):
    async def post(self, account_id: str, action: str) -> None:
        if action == "deactivate":
            await self.call(lambda: self.vault().deactivate(int(account_id)))
            self.answer({"deactivated": int(account_id)})
            return
        config = self.body().get("ccxt_config") or {}
        if not isinstance(config, dict) or set(config) - _CHECK_OPTIONS:
            raise web.HTTPError(400, f"ccxt_config may set only {sorted(_CHECK_OPTIONS)}")
        self.answer(await self.call(lambda: self.vault().check(int(account_id), config)))

    async def get(self, account_id: str, action: str) -> None:
        if action != "keys":
            raise web.HTTPError(405)
        # the account must be the caller's (404 otherwise), and even then: no plaintext over HTTP
        if int(account_id) not in {a.id for a in await self.call(lambda: self.vault().accounts())}:
            raise web.HTTPError(404, f"tenant {self.tenant!r} has no exchange account {account_id}")
        raise web.HTTPError(403, "plaintext keys are handed only to live runs, which the workers start; "
                                 "a notebook server never receives them")


class _ChannelHandler(_VaultHandler):
    """The caller's notification channels, changed by ``Admin`` with the caller's vault."""

    def admin(self) -> Any:
        from workbench.notify._channels import Admin

        return Admin(vault=self.vault())


def _check_session(body: dict[str, Any]) -> None:
    session = body.get("session")
    if session is not None and (not isinstance(session, int) or isinstance(session, bool)):
        raise web.HTTPError(400, "field 'session' must be a trading session id, or null for every session")


class ChannelsHandler(_ChannelHandler):
    async def get(self) -> None:
        def listing() -> list[dict[str, Any]]:
            from workbench import store
            from workbench.notify._channels import listing

            with store.tenant_session(self.tenant) as db:
                return listing(db).reset_index().to_dict("records")
        self.answer(await self.call(listing))

    async def post(self) -> None:
        body = self.body()
        unknown = set(body) - _CHANNEL_FIELDS
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; expected {sorted(_CHANNEL_FIELDS)}")
        for field in ("kind", "name"):
            if not isinstance(body.get(field), str):
                raise web.HTTPError(400, f"field {field!r} is required (a string)")
        if not isinstance(body.get("settings", {}), dict):
            raise web.HTTPError(400, "field 'settings' must be an object of the transport's settings")
        _check_session(body)
        channel_id = await self.call(lambda: self.admin().add(
            body["kind"], body["name"], body.get("settings", {}), body.get("events"), body.get("session"),
            body.get("rate_limit")))
        self.answer({"id": channel_id}, 201)


class ChannelHandler(_ChannelHandler):
    async def patch(self, channel_id: str) -> None:
        changes = self.body()
        unknown = set(changes) - _CHANNEL_CHANGES
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; expected {sorted(_CHANNEL_CHANGES)}")
        if not isinstance(changes.get("enabled", True), bool):
            raise web.HTTPError(400, "field 'enabled' must be true or false")
        _check_session(changes)
        await self.call(lambda: self.admin().change(int(channel_id), **changes))
        self.answer({"changed": int(channel_id)})

    async def delete(self, channel_id: str) -> None:
        await self.call(lambda: self.admin().remove(int(channel_id)))
        self.answer({"removed": int(channel_id)})


class ChannelTestHandler(_ChannelHandler):
    async def post(self, channel_id: str) -> None:
        self.answer({"sent": await self.call(lambda: self.admin().test(int(channel_id)))})


class SessionsHandler(_Handler):
    async def get(self, session_id: str | None = None) -> None:
        if session_id is None:
            self.answer(await self.call(_records.sessions, self.tenant))
        else:
            self.answer(await self.call(_records.session, self.tenant, int(session_id)))


class LiveHandler(_Handler):
    async def get(self, live_id: str | None = None) -> None:
        if live_id is None:
            session = self.get_argument("session", None)
            self.answer(await self.call(_records.live_notebooks, self.tenant,
                                        int(session) if session and session.isdigit() else None))
        else:
            self.answer(await self.call(_records.live_notebook, self.tenant, int(live_id)))


class ScheduleHandler(_Handler):
    """Pause, resume, run now, demote or stop the live notebook of one of the caller's sessions
    (the scheduler's own functions, connected as the caller)."""

    async def post(self, session_id: str, action: str) -> None:
        self.answer(await self.call(_records.change_schedule, self.tenant, int(session_id), action))


class RunsHandler(_Handler):
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
        self.answer(await self.call(_records.runs, self.tenant, numbers["live"], numbers["session"],
                                    numbers["limit"] or 50))


class _DashboardHandler(_Handler):
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
            _log.warning("%s", exc)
            raise web.HTTPError(502, str(exc)) from None

    def server_url(self, owner: str, server: str) -> str:
        return url_path_join(self.application.settings["hub_prefix"], "user", owner, server) + "/"


class DashboardHandler(_DashboardHandler):
    async def post(self, session_id: str) -> None:
        server = await self.own_dashboard(session_id)
        await self.hub_call(self.hub.start_server(self.tenant, server))
        self.answer({"url": self.server_url(self.tenant, server), "server": server})


class SharesHandler(_DashboardHandler):
    async def get(self, session_id: str) -> None:
        server = await self.own_dashboard(session_id)
        self.answer(await self.hub_call(self.hub.shares(self.tenant, server)))

    async def post(self, session_id: str) -> None:
        server = await self.own_dashboard(session_id)
        viewer = self.body().get("user")
        if not isinstance(viewer, str) or not viewer or viewer == self.tenant:
            raise web.HTTPError(400, "field 'user' must name another hub user")
        if await self.hub_call(self.hub.user(viewer)) is None:
            raise web.HTTPError(404, f"no hub user named {viewer!r} (a user appears after their first login)")
        # a share needs the server to exist in the hub; starting it also makes it viewable
        await self.hub_call(self.hub.start_server(self.tenant, server))
        await self.hub_call(self.hub.share(self.tenant, server, viewer))
        _log.info("%s shared dashboard %s with %s", self.tenant, server, viewer)
        self.answer({"url": self.server_url(self.tenant, server), "shared_with": viewer}, 201)


class ShareHandler(_DashboardHandler):
    async def delete(self, session_id: str, viewer: str) -> None:
        server = await self.own_dashboard(session_id)
        await self.hub_call(self.hub.revoke(self.tenant, server, viewer))
        # open pages keep their websocket and cached token: restart to cut them off now
        await self.hub_call(self.hub.stop_server(self.tenant, server))
        _log.info("%s revoked dashboard %s from %s", self.tenant, server, viewer)
        self.answer({"revoked": viewer})


class SharedHandler(_DashboardHandler):
    async def get(self) -> None:
        shared = await self.hub_call(self.hub.shared_with(self.tenant))
        self.answer([{"owner": owner, "server": server, "url": self.server_url(owner, server)}
                     for owner, server in shared])

    async def post(self, owner: str, session_id: str) -> None:
        server = dashboard_server_name(int(session_id))
        if (owner, server) not in await self.hub_call(self.hub.shared_with(self.tenant)):
            raise web.HTTPError(404, f"{owner!r} shares no dashboard of session {session_id} with you")
        await self.hub_call(self.hub.start_server(owner, server))
        self.answer({"url": self.server_url(owner, server), "server": server})


class IndexHandler(_Handler):
    """A small page: the caller's sessions with their dashboards and shares, and what others
    share with them. It calls the JSON API above with the hub's XSRF token."""

    def prepare(self) -> None:
        """Browsers without a session are sent to the hub's login (``web.authenticated``)."""

    @web.authenticated
    async def get(self) -> None:
        prefix = self.application.settings["service_prefix"]
        page = _PAGE.replace("{{prefix}}", html.escape(prefix)).replace(
            "{{xsrf}}", html.escape(self.xsrf_token.decode())).replace("{{user}}", html.escape(self.tenant))
        self.finish(page)


def make_app(vaults: Callable[[str], Any] | None = None) -> web.Application:
    """The service's tornado application (``vaults``: tenant -> VaultBackend, for tests)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    api = url_path_join(prefix, "api")
    routes = [
        (prefix, IndexHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (f"{api}/vault/accounts", AccountsHandler),
        (f"{api}/vault/accounts/{_ID}", AccountHandler),
        (f"{api}/vault/accounts/{_ID}/(deactivate|check|keys)", AccountActionHandler),
        (f"{api}/sessions", SessionsHandler),
        (f"{api}/sessions/{_ID}", SessionsHandler),
        (f"{api}/live", LiveHandler),
        (f"{api}/live/{_ID}", LiveHandler),
        (f"{api}/sessions/{_ID}/(pause|resume|run_now|demote|stop)", ScheduleHandler),
        (f"{api}/runs", RunsHandler),
        (f"{api}/runs/{_ID}", RunsHandler),
        (f"{api}/dashboards/{_ID}", DashboardHandler),
        (f"{api}/dashboards/{_ID}/shares", SharesHandler),
        (f"{api}/dashboards/{_ID}/shares/([^/]+)", ShareHandler),
        (f"{api}/shared", SharedHandler),
        (f"{api}/shared/([^/]+)/{_ID}", SharedHandler),
        (f"{api}/notify/channels", ChannelsHandler),
        (f"{api}/notify/channels/{_ID}", ChannelHandler),
        (f"{api}/notify/channels/{_ID}/test", ChannelTestHandler),
    ]
    hub_prefix = urlparse(os.environ.get("JUPYTERHUB_BASE_URL", "/")).path or "/"
    return web.Application(routes, vaults=vaults or _local_vaults(), hub_api=HubAPI(),
                           hub_prefix=hub_prefix, service_prefix=prefix,
                           cookie_secret=os.urandom(32), xsrf_cookies=True)


def _local_vaults() -> Callable[[str], Any]:
    """One LocalVault per tenant (they cache unwrapped data keys), created on first use."""
    from workbench.vault import LocalVault

    cache: dict[str, Any] = {}

    def vault(tenant: str) -> Any:
        if tenant not in cache:
            cache[tenant] = LocalVault(tenant)
        return cache[tenant]
    return vault


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    make_app().listen(url.port, url.hostname)
    _log.info("workbench service listening on %s", os.environ["JUPYTERHUB_SERVICE_URL"])
    ioloop.IOLoop.current().start()


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Workbench: sessions and dashboards</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em}#msg{color:#a00}</style></head>
<body data-prefix="{{prefix}}" data-xsrf="{{xsrf}}">
<h1>Workbench of {{user}}</h1>
<p><a href="/hub/home">hub home</a> · <a href="/user/{{user}}/lab">JupyterLab</a></p>
<p id="msg"></p>
<h2>My trading sessions</h2>
<table id="sessions"><tr><th>id</th><th>symbol</th><th>status</th><th>dashboard</th><th>shared with</th></tr></table>
<h2>Runs</h2>
<table id="runs"><tr><th>run</th><th>live notebook</th><th>scheduled for</th><th>status</th><th>error</th></tr></table>
<h2>Shared with me</h2>
<ul id="shared"></ul>
<script>
const P = document.body.dataset.prefix + "api/", X = document.body.dataset.xsrf;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function api(method, path, body) {
  const r = await fetch(P + path, {method, headers: {"X-XSRFToken": X, "Content-Type": "application/json"},
                                   body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { document.getElementById("msg").textContent = data.error || r.statusText; throw data; }
  return data;
}
async function openDashboard(id) { const d = await api("POST", "dashboards/" + id); window.location = d.url; }
async function openShared(owner, id) { const d = await api("POST", "shared/" + owner + "/" + id); window.location = d.url; }
async function share(id) {
  const user = document.getElementById("share-" + id).value.trim();
  if (user) { await api("POST", "dashboards/" + id + "/shares", {user}); load(); }
}
async function revoke(id, user) { await api("DELETE", "dashboards/" + id + "/shares/" + encodeURIComponent(user)); load(); }
async function load() {
  const sessions = await api("GET", "sessions"), table = document.getElementById("sessions");
  table.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const s of sessions) {
    const users = await api("GET", "dashboards/" + s.id + "/shares").catch(() => []);
    const row = table.insertRow(); row.className = "row";
    row.innerHTML = `<td>${esc(s.id)}</td><td>${esc(s.symbol)}</td><td>${esc(s.status)}</td>
      <td><button class="open" onclick="openDashboard(${Number(s.id)})">Open dashboard</button></td>
      <td>${users.map(u => `${esc(u)} <button class="revoke" onclick="revoke(${Number(s.id)}, '${esc(u)}')">revoke</button>`).join(" ")}
      <input id="share-${Number(s.id)}" placeholder="user name" size="10">
      <button class="share" onclick="share(${Number(s.id)})">Share read-only</button></td>`;
  }
  const runs = await api("GET", "runs?limit=20"), rt = document.getElementById("runs");
  rt.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const r of runs) {
    const row = rt.insertRow(); row.className = "row";
    row.innerHTML = `<td>${esc(r.id)}</td><td>${esc(r.live_notebook_id)}</td><td>${esc(r.scheduled_for)}</td>
      <td class="status">${esc(r.status)}</td><td>${esc(r.error)}</td>`;
  }
  const shared = await api("GET", "shared"), list = document.getElementById("shared");
  list.innerHTML = shared.map(s => { const id = s.server.replace("dash-", "");
    return `<li><a href="#" onclick="openShared('${esc(s.owner)}', ${Number(id)}); return false">${esc(s.owner)}: session ${esc(id)}</a></li>`; }).join("");
}
load(); setInterval(load, 5000);
</script></body></html>
"""

if __name__ == "__main__":
    main()
