"""The few JupyterHub REST calls the workbench service makes with its own token.

Dashboards are named servers of their owner (``dash-<session id>``), reached by the owner
only: sharing is a database grant the service renders itself, not a JupyterHub share. The
service's role (in ``jupyterhub_config.py``) allows exactly these calls: start servers
and read their state.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from workbench.errors import HubError

_READY_TIMEOUT = 90.0


class HubAPI:
    """JupyterHub's REST API as the service (``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``)."""

    def __init__(self) -> None:
        self.url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
        self._token = os.environ["JUPYTERHUB_API_TOKEN"]

    async def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        """The decoded JSON answer of ``method path``; status codes in ``ok`` answer None."""
        request: dict[str, Any] = dict(method=method, headers={"Authorization": f"token {self._token}"})
        if body is not None or method in ("POST", "PATCH"):
            request["body"] = json.dumps(body or {})
        try:
            response = await AsyncHTTPClient().fetch(self.url + path, **request)
        except HTTPClientError as exc:
            if exc.code in ok:
                return None
            detail = exc.response.body.decode(errors="replace")[:300] if exc.response else str(exc)
            raise HubError(f"hub API {method} {path} answered {exc.code}: {detail}") from None
        return json.loads(response.body) if response.body else None

    async def start_server(self, owner: str, server: str) -> None:
        """Start ``owner``'s named server unless it runs; wait until it answers."""
        path = f"/users/{quote(owner)}/servers/{quote(server)}"
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            model = (await self.call("GET", f"/users/{quote(owner)}") or {}).get("servers", {}).get(server)
            if model and model.get("ready"):
                return
            if not model or not model.get("pending"):
                await self.call("POST", path, ok=(400,))  # 400: it started meanwhile
            if time.monotonic() > deadline:
                raise HubError(f"server {owner}/{server} did not become ready in {_READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.5)
