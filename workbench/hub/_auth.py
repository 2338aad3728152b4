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
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlparse

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler, ToggleAuthorizationHandler, admin_users_scope
from nativeauthenticator.orm import UserInfo
from tornado import web

from workbench.errors import HubError
from workbench.hub._provision import deprovision, provision, validate_username
from workbench.hub._settings import Settings


class WorkbenchAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose approval provisions a tenant and whose deletion retires one."""

    def validate_username(self, username: str) -> bool:
        try:
            validate_username(username)
        except HubError as exc:
            self.log.warning("refused user name: %s", exc)
            return False
        return super().validate_username(username)

    def get_handlers(self, app):
        replace = {ToggleAuthorizationHandler: _ApproveHandler, LoginHandler: _LoginHandler}
        return [(path, replace.get(handler, handler)) for path, handler in super().get_handlers(app)]

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
    passes more template arguments)."""

    statsd = _NoTimer()

    def _render(self, login_error=None, username=None, **_ignored):
        return super()._render(login_error=login_error, username=username)


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
        self.log.info("admin %s %s %s", self.current_user.name,
                      "approved" if info.is_authorized else "revoked the approval of", slug)
        self.redirect(self.hub.base_url + "authorize#" + slug)

    def _refuse_cross_site(self) -> None:
        site = self.request.headers.get("Sec-Fetch-Site")
        referer = self.request.headers.get("Referer")
        if site is not None and site not in ("same-origin", "none"):
            raise web.HTTPError(403, "approvals must come from the hub's own page")
        if referer and urlparse(referer).netloc != self.request.host:
            raise web.HTTPError(403, "approvals must come from the hub's own page")
