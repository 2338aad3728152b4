"""Sign-up with admin approval: NativeAuthenticator, wired to tenant provisioning.

NativeAuthenticator keeps users and bcrypt password hashes in the hub's own database and
lets an admin approve sign-ups at ``/hub/authorize``. Here approving a user also provisions
them as a tenant (``_provision.provision``), and deleting a user from the hub retires the
tenant (``deprovision``). Admins and open sign-ups skip approval; the spawner provisions
them before their first server starts (provisioning is idempotent). User names must be
valid tenant names (lowercase letters, digits, underscores): they become a database role
and a unix account.

The approval page toggles with a plain GET link; since a cross-site page could make an
admin's browser follow such a link, the toggle here refuses requests a browser marks as
cross-site (``Sec-Fetch-Site``) or whose ``Referer`` is another origin.

Failed logins never lock a name (NativeAuthenticator's own lock would let anyone lock any
user, admins included, out by typing five wrong passwords). Instead :class:`LoginThrottle`
counts attempts per client address and makes an address that keeps failing wait longer and
longer before its next password is even checked; the account's owner, logging in from their
own address meanwhile, is let in and told how many failed logins their account saw. The
client address is the one the proxy saw: the last ``X-Forwarded-For`` entry, which
configurable-http-proxy appends; not tornado's ``remote_ip``, which a client sets at will
with an ``X-Real-Ip`` header.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlparse

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LocalBase, LoginHandler, ToggleAuthorizationHandler, admin_users_scope
from nativeauthenticator.orm import UserInfo
from tornado import httputil, web
from tornado.httputil import url_concat
from traitlets import Integer, List, Unicode

from workbench.errors import HubError
from workbench.hub._provision import deprovision, provision, validate_username
from workbench.hub._settings import Settings
from workbench.settings import trait_help


@dataclass
class FailedLogins:
    """What the owner of an account is told at their next successful login."""

    count: int
    last_address: str
    last_at: datetime


class LoginThrottle:
    """Attempts per client address: ``free`` of them at no cost, then each further failure
    makes the address wait twice as long (1 s, 2 s, 4 s, ... up to ``longest``) before it may
    try again. Failed attempts per account are kept for :meth:`succeeded` to report."""

    def __init__(
        self,
        free: int = 5,
        longest: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = 100_000,
    ):
        self.free, self.longest, self._clock, self._remembered = free, longest, clock, remembered
        self._addresses: dict[str, tuple[int, float]] = {}  # address -> (failures, may retry at)
        self._accounts: dict[str, FailedLogins] = {}

    def begin(self, address: str) -> float:
        """Seconds ``address`` must still wait; when 0 the attempt is counted as a failure
        right away (so a burst of parallel attempts is counted whole) until it succeeds."""
        now = self._clock()
        failures, retry_at = self._addresses.get(address, (0, now))
        if retry_at > now:
            return retry_at - now
        failures += 1
        delay = 0.0 if failures <= self.free else min(2.0 ** (failures - self.free - 1), self.longest)
        if len(self._addresses) >= self._remembered:
            self._forget_idle(now)
        self._addresses[address] = (failures, now + delay)
        return 0.0

    def failed(self, username: str, address: str) -> None:
        """Record a failed (or refused) attempt at existing account ``username``."""
        report = self._accounts.get(username)
        now = datetime.now(UTC)
        self._accounts[username] = FailedLogins((report.count if report else 0) + 1, address, now)

    def succeeded(self, username: str, address: str) -> FailedLogins | None:
        """``username`` logged in from ``address``: the address starts afresh; the account's
        failed logins since its last login, if any, are returned once."""
        self._addresses.pop(address, None)
        return self._accounts.pop(username, None)

    def _forget_idle(self, now: float) -> None:
        """Drop the addresses whose wait ended longest ago (bounded memory under a flood)."""
        oldest = sorted(self._addresses, key=lambda address: self._addresses[address][1])
        for address in oldest[: len(oldest) // 2]:
            del self._addresses[address]


def client_address(request: httputil.HTTPServerRequest, trusted_proxies: list[str]) -> str:
    """The address the proxy saw the request come from: the last ``X-Forwarded-For`` entry that
    is not one of ``trusted_proxies`` (proxies in front of configurable-http-proxy), else the
    peer of the connection."""
    forwarded = [entry.strip() for entry in request.headers.get("X-Forwarded-For", "").split(",")]
    for entry in reversed(forwarded):
        if entry and entry not in trusted_proxies:
            return entry
    # tornado types the connection as the abstract HTTPConnection; its HTTP1Connection has the context
    return str(cast(Any, request.connection).context.address[0]) if request.connection else ""


class WorkbenchAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose approval provisions a tenant and whose deletion retires one,
    and whose failed logins slow the client address down instead of locking the name."""

    free_failed_logins = Integer(5, config=True, help=trait_help("free_failed_logins"))
    longest_login_wait = Integer(300, config=True, help=trait_help("longest_login_wait"))
    trusted_proxies = List(Unicode(), config=True, help=trait_help("trusted_proxies"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed_failed_logins = 0  # never lock a name: the throttle below slows addresses
        self.throttle = LoginThrottle(self.free_failed_logins, float(self.longest_login_wait))
        self.failed_login_reports: dict[str, FailedLogins] = {}

    async def authenticate(self, handler, data):
        address = client_address(handler.request, self.trusted_proxies)
        username = await super().authenticate(handler, data)
        if username:
            report = self.throttle.succeeded(username, address)
            if report is not None:
                self.failed_login_reports[username] = report
        elif not self._awaits_approval(data.get("username", ""), data.get("password", "")):
            self.note_failure(data.get("username", ""), address)
        return username

    def _awaits_approval(self, username: str, password: str) -> bool:
        """The right password for a sign-up not approved yet: refused, but not a failed login
        its owner should be warned of after approval."""
        user = self.get_user(username)
        return user is not None and not user.is_authorized and user.is_valid_password(password)

    def note_failure(self, username: str, address: str) -> None:
        """Count a failed or refused attempt at ``username`` when such an account exists."""
        name = self.normalize_username(username)
        if self.get_user(name) is not None:
            self.throttle.failed(name, address)

    def validate_username(self, username: str) -> bool:
        try:
            validate_username(username)
        except HubError as exc:
            self.log.warning("refused user name: %s", exc)
            return False
        return super().validate_username(username)

    def get_handlers(self, app):
        replace = {ToggleAuthorizationHandler: _ApproveHandler, LoginHandler: _LoginHandler}
        return [(path, replace.get(handler, handler)) for path, handler in super().get_handlers(app)] + [
            (r"/failed-logins", _FailedLoginsHandler)
        ]

    async def delete_user(self, user) -> None:
        await asyncio.to_thread(deprovision, user.name, Settings.from_env())
        super().delete_user(user)


class _NoTimer:
    """JupyterHub 6 dropped statsd, which NativeAuthenticator 1.3's login still times itself with."""

    def timer(self, name: str) -> _NoTimer:
        return self

    def start(self) -> _NoTimer:
        return self

    def stop(self, send: bool = True) -> None:
        pass


class _LoginHandler(LoginHandler):
    """NativeAuthenticator's login page, fitted to JupyterHub 6 (no statsd; the error page
    passes more template arguments); an address that must wait is answered 429 without its
    password being checked, and a login after failed ones goes by the report page."""

    statsd = _NoTimer()

    def _render(self, login_error=None, username=None, **_ignored):
        return super()._render(login_error=login_error, username=username)

    async def post(self):
        address = client_address(self.request, self.authenticator.trusted_proxies)
        wait = math.ceil(self.authenticator.throttle.begin(address))
        if not wait:
            return await super().post()
        username = self.get_argument("username", "")
        self.authenticator.note_failure(username, address)
        self.set_status(429)
        self.set_header("Retry-After", str(wait))
        self.finish(
            await self._render(
                login_error=f"Too many failed logins from your address: try again in {wait} s.", username=username
            )
        )

    def get_next_url(self, user=None, default=None):
        target = super().get_next_url(user, default)
        if user is not None and user.name in self.authenticator.failed_login_reports:
            return url_concat(self.hub.base_url + "failed-logins", {"next": target})
        return target


_FAILED_LOGINS_PAGE = """{% extends "page.html" %}
{% block main %}<div class="container">
  <h2>Failed logins</h2>
  <p id="failed-logins">Your account saw {{ report.count }} failed login{{ "s" if report.count != 1 }}
     since your last login, the last from {{ report.last_address }} at
     {{ report.last_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}. If that was not you, change your password.</p>
  <a class="btn btn-primary" href="{{ next_url }}">Continue</a>
  <a class="btn btn-default" href="{{ base_url }}change-password">Change password</a>
</div>{% endblock %}"""


class _FailedLoginsHandler(LocalBase):
    """``/hub/failed-logins``: tells a user, once, about the failed logins before this one."""

    @web.authenticated
    async def get(self):
        report = self.authenticator.failed_login_reports.pop(self.current_user.name, None)
        next_url = self.get_next_url(self.current_user)
        if report is None:
            return self.redirect(next_url)
        template = self.settings["jinja2_env"].from_string(_FAILED_LOGINS_PAGE)
        self.finish(
            await template.render_async(
                **self.template_namespace, xsrf_token=self.xsrf_token.decode(), report=report, next_url=next_url
            )
        )


class _ApproveHandler(ToggleAuthorizationHandler):
    """``/hub/authorize/<name>``: provision, then approve (or revoke the approval)."""

    @admin_users_scope
    async def get(self, slug):
        self._refuse_cross_site()
        info = UserInfo.find(self.db, slug)
        if info is None:
            raise web.HTTPError(404, f"no sign-up named {slug!r}")
        if not info.is_authorized:
            try:
                await asyncio.to_thread(provision, slug, Settings.from_env())
            except HubError as exc:
                raise web.HTTPError(409, f"cannot approve {slug!r}: {exc}") from None
        UserInfo.change_authorization(self.db, slug)
        self.log.info(
            "admin %s %s %s",
            self.current_user.name,
            "approved" if info.is_authorized else "revoked the approval of",
            slug,
        )
        self.redirect(self.hub.base_url + "authorize#" + slug)

    def _refuse_cross_site(self) -> None:
        site = self.request.headers.get("Sec-Fetch-Site")
        referer = self.request.headers.get("Referer")
        if site is not None and site not in ("same-origin", "none"):
            raise web.HTTPError(403, "approvals must come from the hub's own page")
        if referer and urlparse(referer).netloc != self.request.host:
            raise web.HTTPError(403, "approvals must come from the hub's own page")
