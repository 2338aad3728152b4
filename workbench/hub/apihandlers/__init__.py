"""The handlers of the workbench service (``workbench.hub._service``), one module per resource.

- ``base``: authentication as the calling tenant, bounded JSON bodies (``Field``), JSON
  errors, HTML pages under a nonce Content-Security-Policy;
- ``vault``: the caller's exchange accounts;
- ``sessions``: trading sessions, their live notebooks (schedules) and runs;
- ``dashboards``: the caller's dashboard servers, shares, and the pages of sessions shared
  with the caller;
- ``notify``: the caller's notification channels;
- ``pages``: the service's own page.

Each module lists its routes in its docstring and in ``default_handlers`` (route under the
service's prefix, handler); ``default_handlers`` here is all of them, which ``make_app`` mounts.
Another tenant's account, session, live notebook, run, dashboard or channel answers 404,
exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from workbench.hub.apihandlers import dashboards, notify, pages, sessions, vault

default_handlers: list[tuple[str, Any]] = []
for _module in (pages, vault, sessions, dashboards, notify):
    default_handlers.extend(_module.default_handlers)
