"""What every handler of the workbench service shares: authentication, bodies, errors.

The caller must be a hub *user* (a browser's OAuth cookie, or a tenant server's own API
token); the tenant is the token's user name, never a parameter. JSON errors are
``{"error": ...}``. A body over 64 KiB (``MAX_BODY``) answers 413 and is not kept: up to
32 MiB (``DRAIN_LIMIT``) it is read and dropped first, so that the answer reaches the client
through the hub's proxy (which reports a connection closed under a request it is still sending
as 503); a larger one is refused at once. Each ``Field`` has a type and a length limit (400
names the field). ``PageHandler`` answers HTML instead, under a Content-Security-Policy that
runs only scripts carrying the page's nonce.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from workbench.errors import AccountNotFound, ChannelNotFound, WorkbenchError
from workbench.hub._records import NotFound

log = logging.getLogger("workbench.hub.service")
ID = r"(\d{1,18})"  # a bigint; longer ids match no route (404)
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


def text(limit: int, required: bool = False) -> Field:
    """A string field of at most ``limit`` characters."""
    return Field((str,), "a string", limit, required)


@web.stream_request_body
class APIHandler(HubOAuthenticated, web.RequestHandler):
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
            raise web.HTTPError(
                413, f"the request body is {self._received} bytes; the service takes at most {MAX_BODY}"
            )
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


class PageHandler(APIHandler):
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
