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
    POST   dashboards/<session id>              start the caller's own dashboard server: {url}
    GET    dashboards/<session id>/shares       tenants the session is shared with
    POST   dashboards/<session id>/shares       {user}: share the session read-only
    DELETE dashboards/<session id>/shares/<user>   revoke (the viewer's next reload finds nothing)
    GET    shared                               sessions others shared with the caller: [{owner, session, url}]
    POST   shared/<owner>/<session id>          the page of a session shared with the caller: {url}
    GET    notify/channels                      the caller's notification channels (no secret)
    POST   notify/channels                      {kind, name, settings, events?, session?, rate_limit?}: {id}
    PATCH  notify/channels/<id>                 {events?, session?, enabled?, rate_limit?}
    POST   notify/channels/<id>/test            send a test message now: {sent}
    DELETE notify/channels/<id>

Another tenant's account, session, live notebook, run, dashboard or channel answers 404,
exactly like one that does not exist. Request bodies (keys, channel secrets) are never logged.
A body over 64 KiB answers 413 and is not kept: up to 32 MiB it is read and dropped first, so
that the answer reaches the client through the hub's proxy (which reports a connection closed
under a request it is still sending as 503); a larger one is refused at once. Each field has a
type and a length limit (400 names the field).

Shared dashboards (``GET shared/<owner>/<session id>``, an HTML page) are rendered here, for
the viewer, from the rows the viewer's own database role may read (``dashboard_shares`` and
the policies of revision 0011): no process of the owner is involved, so nothing the owner
controls reaches the viewer's browser on the hub's origin. Tenant strings are escaped, and
the page's Content-Security-Policy runs only scripts carrying its nonce (BokehJS, served from
the package, and the chart). The owner's own dashboard is still Voila in the owner's named
server ``dash-<session id>``, which only the owner can reach.

    python -m workbench.hub._service     # run by the hub (JUPYTERHUB_* set)
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from workbench import store
from workbench.errors import AccountNotFound, ChannelNotFound, HubError, WorkbenchError
from workbench.hub import _records
from workbench.hub._hubapi import HubAPI
from workbench.hub._records import NotFound
from workbench.hub._spawner import dashboard_server_name
from workbench.vault import Secret

_log = logging.getLogger("workbench.hub.service")
_ID = r"(\d{1,18})"  # a bigint; longer ids match no route (404)
MAX_BODY = 64 * 1024  # bytes: the largest body any endpoint needs is a key pair with a PEM secret
DRAIN_LIMIT = 32 * 1024 * 1024  # bytes: an oversized body up to this is read and dropped before the 413
# JSON answers are data, never a page: nothing in them may run or be framed
_API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# a page's scripts run only with the page's nonce; 'self' is not enough, since tenants' own
# servers share the hub's origin
_PAGE_POLICY = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'{extra}"
)
_BOKEH_JS = "static/bokeh/bokeh.min.js"


@dataclass(frozen=True)
class Field:
    """One field of a JSON body: its JSON types, a size limit (characters of a string, or of
    the JSON text of an object or list; 0: none), whether it is required or may be null."""

    types: tuple[type, ...]
    what: str
    limit: int = 0
    required: bool = False
    nullable: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.nullable:
            return
        if not isinstance(value, self.types) or (isinstance(value, bool) and bool not in self.types):
            raise web.HTTPError(400, f"field {name!r} must be {self.what}")
        size = len(value) if isinstance(value, str) else len(json.dumps(value)) if self.limit else 0
        if self.limit and size > self.limit:
            raise web.HTTPError(400, f"field {name!r} is {size} characters long; at most {self.limit} are allowed")


def _text(limit: int, required: bool = False) -> Field:
    return Field((str,), "a string", limit, required)


_SESSION = Field((int,), "a trading session id, or null for every session", nullable=True)
_EVENTS = Field((list, str), "a list of event kinds, or null for all", 2048, nullable=True)
_RATE_LIMIT = Field((int,), "a whole number of messages per minute", nullable=True)
_ACCOUNT_FIELDS = {
    "exchange": _text(32, True),
    "api_key": _text(512, True),
    "secret": _text(4096, True),
    "passphrase": _text(256),
    "permissions": _text(32),
    "label": _text(100),
}
# ccxt options a tenant may pass to a connectivity check: no logger, no verbose, no keys, and
# nothing that moves the requests elsewhere (urls, hostname, proxies): the service signs them
# with the tenant's key, which must go to the exchange only, never to a host the tenant names
_CHECK_OPTIONS = {"timeout", "options"}
_CHECK_FIELDS = {"ccxt_config": Field((dict,), "an object of ccxt options", 2048, nullable=True)}
_CHANNEL_FIELDS = {
    "kind": _text(32, True),
    "name": _text(100, True),
    "settings": Field((dict,), "an object of the transport's settings", 4096),
    "events": _EVENTS,
    "session": _SESSION,
    "rate_limit": _RATE_LIMIT,
}
_CHANNEL_CHANGES = {
    "events": _EVENTS,
    "session": _SESSION,
    "enabled": Field((bool,), "true or false"),
    "rate_limit": _RATE_LIMIT,
}
_SHARE_FIELDS = {"user": _text(64, True)}


@web.stream_request_body
class _Handler(HubOAuthenticated, web.RequestHandler):
    """Base: the caller must be a hub *user*; errors are JSON ``{"error": ...}``. The body is
    streamed so that one larger than ``MAX_BODY`` is refused (413) without being kept."""

    _chunks: list[bytes]
    _received = 0

    @property
    def tenant(self) -> str:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in through the hub first")
        if user.get("kind") != "user":
            raise web.HTTPError(403, f"{user.get('kind')} {user.get('name')!r} is not a tenant")
        return user["name"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", _API_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def prepare(self) -> None:
        self._chunks = []
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > DRAIN_LIMIT:
            raise web.HTTPError(413, f"the request body is {declared} bytes; the service takes at most {MAX_BODY}")
        if self.current_user is None:
            raise web.HTTPError(403, "log in through the hub first (or send a hub API token)")

    def data_received(self, chunk: bytes) -> None:
        """Keep the body up to ``MAX_BODY`` (a chunked one may not say its size up front)."""
        self._received += len(chunk)
        if self._received <= MAX_BODY:
            self._chunks.append(chunk)

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

    def body(self, fields: dict[str, Field]) -> dict[str, Any]:
        """The JSON object of the request, each member checked against ``fields``."""
        if self._received > MAX_BODY:
            raise web.HTTPError(413, f"the request body is {self._received} bytes; the service takes at most {MAX_BODY}")
        try:
            value = json.loads(b"".join(self._chunks) or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        if not isinstance(value, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        unknown = set(value) - set(fields)
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; expected {sorted(fields)}")
        for name, field in fields.items():
            if name in value:
                field.check(name, value[name])
            elif field.required:
                raise web.HTTPError(400, f"field {name!r} is required ({field.what})")
        return value

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run blocking store/vault code off the event loop; map its errors to HTTP."""
        try:
            return await asyncio.to_thread(function, *args)
        except (NotFound, AccountNotFound, ChannelNotFound) as exc:  # by type, never by wording
            raise web.HTTPError(404, str(exc)) from None
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
        body = self.body(_ACCOUNT_FIELDS)
        passphrase = body.get("passphrase")
        account_id = await self.call(
            lambda: self.vault().add_account(
                body["exchange"],
                Secret(body["api_key"]),
                Secret(body["secret"]),
                Secret(passphrase) if passphrase else None,
                body.get("permissions", "read"),
                body.get("label", ""),
            )
        )
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
        config = self.body(_CHECK_FIELDS).get("ccxt_config") or {}
        if set(config) - _CHECK_OPTIONS:
            raise web.HTTPError(400, f"ccxt_config may set only {sorted(_CHECK_OPTIONS)}")
        self.answer(await self.call(lambda: self.vault().check(int(account_id), config)))

    async def get(self, account_id: str, action: str) -> None:
        if action != "keys":
            raise web.HTTPError(405)
        # the account must be the caller's (404 otherwise), and even then: no plaintext over HTTP
        if int(account_id) not in {a.id for a in await self.call(lambda: self.vault().accounts())}:
            raise web.HTTPError(404, f"tenant {self.tenant!r} has no exchange account {account_id}")
        raise web.HTTPError(
            403,
            "plaintext keys are handed only to live runs, which the workers start; "
            "a notebook server never receives them",
        )


class _ChannelHandler(_VaultHandler):
    """The caller's notification channels, changed by ``Admin`` with the caller's vault."""

    def admin(self) -> Any:
        from workbench.notify import Admin

        return Admin(vault=self.vault())


class ChannelsHandler(_ChannelHandler):
    async def get(self) -> None:
        def listing() -> list[dict[str, Any]]:
            from workbench import store
            from workbench.notify import listing

            with store.tenant_session(self.tenant) as db:
                return listing(db).reset_index().to_dict("records")

        self.answer(await self.call(listing))

    async def post(self) -> None:
        body = self.body(_CHANNEL_FIELDS)
        channel_id = await self.call(
            lambda: self.admin().add(
                body["kind"],
                body["name"],
                body.get("settings", {}),
                body.get("events"),
                body.get("session"),
                body.get("rate_limit"),
            )
        )
        self.answer({"id": channel_id}, 201)


class ChannelHandler(_ChannelHandler):
    async def patch(self, channel_id: str) -> None:
        changes = self.body(_CHANNEL_CHANGES)
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
            self.answer(
                await self.call(
                    _records.live_notebooks, self.tenant, int(session) if session and session.isdigit() else None
                )
            )
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
        self.answer(
            await self.call(_records.runs, self.tenant, numbers["live"], numbers["session"], numbers["limit"] or 50)
        )


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
        _log.info("%s shared session %s with %s", self.tenant, session_id, viewer)
        self.answer({"url": self.shared_url(self.tenant, session_id), "shared_with": viewer}, 201)


class ShareHandler(_DashboardHandler):
    async def delete(self, session_id: str, viewer: str) -> None:
        await self.call(_records.unshare, self.tenant, int(session_id), viewer)
        _log.info("%s revoked session %s from %s", self.tenant, session_id, viewer)
        self.answer({"revoked": viewer})


class SharedHandler(_DashboardHandler):
    async def get(self) -> None:
        shared = await self.call(_records.shared_with, self.tenant)
        self.answer([{**item, "url": self.shared_url(item["owner"], item["session"])} for item in shared])

    async def post(self, owner: str, session_id: str) -> None:
        await self.call(_records.shared_owner_id, self.tenant, owner, int(session_id))
        self.answer({"url": self.shared_url(owner, session_id)})


class _PageHandler(_Handler):
    """An HTML page of the service: a fresh CSP nonce per answer, scripts only with it."""

    nonce = ""

    def prepare(self) -> None:
        """Browsers without a session are sent to the hub's login (``web.authenticated``)."""
        self._chunks = []

    def page_policy(self, extra: str = "") -> None:
        self.nonce = secrets.token_urlsafe(18)
        self.set_header("Content-Security-Policy", _PAGE_POLICY.format(nonce=self.nonce, extra=extra))
        self.set_header("Content-Type", "text/html; charset=utf-8")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.page_policy()
        self.finish(
            f"<!doctype html><meta charset='utf-8'><title>{status_code}</title>"
            f"<p class='wb-error'>{html.escape(message)}</p>"
        )


class SharedPageHandler(_PageHandler):
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


class IndexHandler(_PageHandler):
    """A small page: the caller's sessions with their dashboards and shares, and what others
    share with them. Its one script (with the page's nonce) calls the JSON API above with the
    hub's XSRF token and puts every value in the page as text, never as markup."""

    @web.authenticated
    async def get(self) -> None:
        prefix = self.application.settings["service_prefix"]
        self.page_policy("; connect-src 'self'")
        page = (
            _PAGE.replace("{{prefix}}", html.escape(prefix))
            .replace("{{xsrf}}", html.escape(self.xsrf_token.decode()))
            .replace("{{user}}", html.escape(self.tenant))
            .replace("{{nonce}}", self.nonce)
        )
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
        (url_path_join(prefix, "shared", r"([^/]+)", _ID), SharedPageHandler),
        (url_path_join(prefix, "static/bokeh/(.*)"), web.StaticFileHandler, {"path": _bokeh_static()}),
        (f"{api}/notify/channels", ChannelsHandler),
        (f"{api}/notify/channels/{_ID}", ChannelHandler),
        (f"{api}/notify/channels/{_ID}/test", ChannelTestHandler),
    ]
    hub_prefix = urlparse(os.environ.get("JUPYTERHUB_BASE_URL", "/")).path or "/"
    return web.Application(
        routes,
        vaults=vaults or _local_vaults(),
        hub_api=HubAPI(),
        hub_prefix=hub_prefix,
        service_prefix=prefix,
        cookie_secret=os.urandom(32),
        xsrf_cookies=True,
    )


def _bokeh_static() -> str:
    """BokehJS as the bokeh package ships it (the service serves it: pages work offline)."""
    from bokeh.util.paths import bokehjs_path

    return str(bokehjs_path() / "js")


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
    make_app().listen(cast(int, url.port), url.hostname)  # JupyterHub gives its services a port
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
<script nonce="{{nonce}}">
// every value from the API goes into the page as text (textContent), never as markup
const PREFIX = document.body.dataset.prefix, P = PREFIX + "api/", X = document.body.dataset.xsrf;
async function api(method, path, body) {
  const r = await fetch(P + path, {method, headers: {"X-XSRFToken": X, "Content-Type": "application/json"},
                                   body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { document.getElementById("msg").textContent = data.error || r.statusText; throw data; }
  return data;
}
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}
function button(label, cls, action) {
  const b = el("button", {className: cls, textContent: label});
  b.addEventListener("click", action);
  return b;
}
function row(table, cells) {
  const tr = table.insertRow(); tr.className = "row";
  for (const cell of cells) { const td = tr.insertCell(); td.append(...[].concat(cell)); }
  return tr;
}
async function load() {
  const sessions = await api("GET", "sessions"), table = document.getElementById("sessions");
  table.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const s of sessions) {
    const id = Number(s.id), users = await api("GET", "dashboards/" + id + "/shares").catch(() => []);
    const input = el("input", {id: "share-" + id, placeholder: "user name", size: 10});
    const shares = users.flatMap(u => [String(u) + " ", button("revoke", "revoke", async () => {
      await api("DELETE", "dashboards/" + id + "/shares/" + encodeURIComponent(u)); load(); }), " "]);
    row(table, [String(id), String(s.symbol ?? ""), String(s.status ?? ""),
                button("Open dashboard", "open", async () => {
                  window.location = (await api("POST", "dashboards/" + id)).url; }),
                [...shares, input, button("Share read-only", "share", async () => {
                  const user = input.value.trim();
                  if (user) { await api("POST", "dashboards/" + id + "/shares", {user}); load(); } })]]);
  }
  const runs = await api("GET", "runs?limit=20"), rt = document.getElementById("runs");
  rt.querySelectorAll("tr.row").forEach(r => r.remove());
  for (const r of runs) {
    const tr = row(rt, [String(r.id), String(r.live_notebook_id), String(r.scheduled_for ?? ""),
                        String(r.status ?? ""), String(r.error ?? "")]);
    tr.cells[3].className = "status";
  }
  const shared = await api("GET", "shared"), list = document.getElementById("shared");
  list.replaceChildren(...shared.filter(s => String(s.url).startsWith(PREFIX)).map(s =>
    el("li", {}, el("a", {href: s.url, className: "shared", textContent: s.owner + ": session " + s.session}))));
}
load(); setInterval(load, 5000);
</script></body></html>
"""

if __name__ == "__main__":
    main()
