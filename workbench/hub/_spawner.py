"""The spawners: one server per tenant, with the tenant's database role and nothing trusted.

Every server a tenant gets, whatever the spawner, is started by ``_TenantServer.start``:

- the tenant is provisioned first (idempotent: role, workspace, unix account as root);
- its environment carries the tenant's own database URL (``WORKBENCH_TENANT_DATABASE_URL``)
  and the workbench service's URL, and never the owner's URL, the master key or the role
  secret, even if the hub's operator put them in ``Spawner.env_keep`` by mistake;
- the default server runs JupyterLab (``jupyterhub-singleuser``); a named server called
  ``dash-<session id>`` runs only Voila on the session dashboard (``_dashboard``), which is
  what a tenant shares read-only; any other named server is refused.

``LocalTenantSpawner`` (hub run as root) runs each tenant as unix account ``jupyter-<name>``
with a private home; ``SimpleTenantSpawner`` (development) runs everyone as the hub's own
account, in ``<home>/hub/users/<name>``, and says loudly that files are not isolated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pwd
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from tornado import web
from traitlets import HasTraits, Unicode, default

from workbench import store
from workbench.hub._provision import provision, unix_name, workspace
from workbench.hub._settings import (
    DASHBOARD_PREFIX,
    SERVICE_URL_ENV,
    SESSION_ENV,
    Settings,
    bin_path,
    dashboard_environment,
)
from workbench.settings import trait_help

# never handed to a tenant's process (see workbench.store and workbench.vault._keyring)
TRUSTED_ONLY_ENV = (
    "WORKBENCH_DATABASE_URL",
    "DATABASE_URL",
    "WORKBENCH_MASTER_KEY",
    "WORKBENCH_MASTER_KEY_FILE",
    "WORKBENCH_DB_ROLE_SECRET",
    "WORKBENCH_HOME",
)
FILE_ISOLATION_WARNING = (
    "FILE ISOLATION IS OFF: the hub does not run as root, so every tenant's server runs as the "
    "hub's own unix account and can read the other tenants' files (database rows stay isolated "
    "by PostgreSQL). Run the hub as root for one unix account per tenant. Development only."
)


def dashboard_session(server_name: str) -> int | None:
    """The session id of a dashboard server's name (``dash-12`` -> 12); None for other names."""
    suffix = server_name.removeprefix(DASHBOARD_PREFIX)
    if server_name.startswith(DASHBOARD_PREFIX) and suffix.isdigit():
        return int(suffix)
    return None


def dashboard_server_name(session_id: int) -> str:
    return f"{DASHBOARD_PREFIX}{int(session_id)}"


def dashboard_notebook(settings: Settings) -> Path:
    """The session dashboard every dashboard server renders (read-only to tenants)."""
    return settings.notebooks / "dashboards" / "session.ipynb"


if TYPE_CHECKING:  # pragma: no cover - the mixin's methods use the spawner's (untyped, so Any)
    from jupyterhub.spawner import Spawner as _Spawner
else:
    _Spawner = HasTraits  # so that the mixin's own traitlets are set up as a spawner's


class _TenantServer(_Spawner):
    """Mixin over a JupyterHub spawner: provisioning, the tenant's environment, server kinds.

    Its settings are traitlets, as JupyterHub's own are, so ``jupyterhub_config.py`` may set
    them (``c.LocalTenantSpawner.notebooks_dir = ...``); their defaults come from the
    environment (docs/SETTINGS.md)."""

    workbench_service_url = Unicode(help=trait_help("workbench_service_url")).tag(config=True)
    notebooks_dir = Unicode(help=trait_help("notebooks_dir")).tag(config=True)

    _tenant_url = ""

    @default("workbench_service_url")
    def _default_service_url(self) -> str:
        return Settings.from_env().service_url

    @default("notebooks_dir")
    def _default_notebooks_dir(self) -> str:
        return str(Settings.from_env().notebooks)

    def workbench_settings(self) -> Settings:
        """The hub's settings, with what this spawner's configuration says instead."""
        return dataclasses.replace(Settings.from_env(), notebooks=Path(self.notebooks_dir))

    async def start(self):
        settings = self.workbench_settings()
        session_id = dashboard_session(self.name)
        if self.name and session_id is None:
            raise web.HTTPError(
                400,
                f"server name {self.name!r}: tenants get one JupyterLab server and "
                f"named dashboard servers '{DASHBOARD_PREFIX}<session id>' only",
            )
        await asyncio.to_thread(provision, self.user.name, settings)
        self._tenant_url = await asyncio.to_thread(store.tenant_url, self.user.name)
        if session_id is None:
            # kernels talk over unix sockets in the tenant's private runtime folder, not TCP ports
            self.cmd, self.args = self.lab_command(settings), ["--KernelManager.transport=ipc"]
        else:
            self.cmd, self.args = self.dashboard_command(settings), []
        return await super().start()

    def lab_command(self, settings: Settings) -> list[str]:
        return [bin_path("jupyterhub-singleuser"), f"--ServerApp.root_dir={workspace(self.user.name, settings)}"]

    def dashboard_command(self, settings: Settings) -> list[str]:
        notebook = dashboard_notebook(settings)
        if not notebook.is_file():
            raise web.HTTPError(503, f"the dashboard notebook {notebook} is missing")
        return [sys.executable, "-m", "workbench.hub._dashboard", str(notebook)]

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        for name in TRUSTED_ONLY_ENV:
            env.pop(name, None)
        env[store.TENANT_URL_ENV] = self._tenant_url
        env[SERVICE_URL_ENV] = self.workbench_service_url
        session_id = dashboard_session(self.name)
        if session_id is not None:
            env[SESSION_ENV] = str(session_id)
            # the dashboard runs the package's code and configuration, not the tenant's
            env.update(dashboard_environment())
            env.pop("PYTHONPATH", None)
        return env


class LocalTenantSpawner(_TenantServer, LocalProcessSpawner):
    """Hub run as root: each tenant's servers run as unix account ``jupyter-<name>``."""

    def make_preexec_fn(self, name):
        return set_user_setuid(unix_name(name))

    def user_env(self, env):
        account = pwd.getpwnam(unix_name(self.user.name))
        env.update(USER=account.pw_name, HOME=account.pw_dir, SHELL=account.pw_shell)
        return env


class SimpleTenantSpawner(_TenantServer, SimpleLocalProcessSpawner):
    """Development: every tenant's server runs as the hub's own account (no file isolation)."""

    async def start(self):
        self.log.warning(FILE_ISOLATION_WARNING)
        return await super().start()
