"""The workbench service: the trusted side a tenant's server talks to, behind JupyterHub OAuth.

JupyterHub starts it as a managed service (``/services/workbench/``) with the master key
and the database owner's URL, which tenants' servers never get. Every request is
authenticated by the hub (a browser's OAuth cookie, or a tenant server's own API token,
which ``jupyterhub_config.py`` grants ``access:services!service=workbench``) and acts for
the calling user only: the tenant is the token's user name, never a parameter.

The handlers are in ``workbench.hub.apihandlers``, one module per resource, each listing its
routes (the JSON API is under ``/services/workbench/api``); this module mounts them, with the
OAuth callback and BokehJS, and runs the server.

    python -m workbench.hub._service     # run by the hub (JUPYTERHUB_* set)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from workbench.hub import apihandlers
from workbench.hub._hubapi import HubAPI
from workbench.hub.apihandlers.base import log
from workbench.hub.apihandlers.dashboards import BOKEH_STATIC


def make_app(vaults: Callable[[str], Any] | None = None) -> web.Application:
    """The service's tornado application (``vaults``: tenant -> VaultBackend, for tests)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    routes: list[Any] = [
        (prefix if route == "/" else url_path_join(prefix, route), handler)
        for route, handler in apihandlers.default_handlers
    ]
    routes += [
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (url_path_join(prefix, BOKEH_STATIC, "(.*)"), web.StaticFileHandler, {"path": _bokeh_static()}),
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
    log.info("workbench service listening on %s", os.environ["JUPYTERHUB_SERVICE_URL"])
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
