"""JupyterHub integration: provisioning tenants, their isolated servers, the workbench
service, read-only dashboards, and the one command that runs it all.

    workbench hub                    # what `python3 dev.py run` starts (see _launcher)

Modules, one concern each:

- ``_settings``: every setting, from the environment (``Settings.from_env()``);
- ``_provision``: approval makes a tenant (database role, workspace, unix account as root);
  removal retires it (``provision``, ``deprovision``);
- ``_auth``: NativeAuthenticator wired to provisioning (``WorkbenchAuthenticator``);
- ``_spawner``/``_kube``: one server per tenant with its own role and no trusted secret;
  ``dash-<session>`` named servers run only Voila (``_dashboard``);
- ``_service`` (+ ``apihandlers``, one module per resource, ``_records``, ``_hubapi``): the
  hub-managed workbench service behind JupyterHub OAuth: vault, schedules, runs, dashboard
  sharing, notification channels, all for the caller only;
- ``_vault``: ``ServiceVault``, the vault a tenant's server uses (``workbench.vault.backend()``
  picks it when ``WORKBENCH_SERVICE_URL`` is set);
- ``_demo``, ``_launcher``, ``_cli``: first-run accounts, start and stop, the command.

The trust model and the sharing design are in ``hub_config/README.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import from_modules, lazy_exports

_MODULES = {
    "workbench.hub._settings": ["Settings"],
    "workbench.hub._provision": ["deprovision", "provision"],
    "workbench.hub._vault": ["ServiceVault"],
    "workbench.hub._launcher": ["run"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules(_MODULES))

if TYPE_CHECKING:  # pragma: no cover
    from workbench.hub._launcher import run
    from workbench.hub._provision import deprovision, provision
    from workbench.hub._settings import Settings
    from workbench.hub._vault import ServiceVault
