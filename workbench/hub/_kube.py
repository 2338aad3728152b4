"""``KubeTenantSpawner``: one pod per tenant on Kubernetes (Zero to JupyterHub).

The same rules as on one machine (``_spawner._TenantServer``): provisioning before the
first start, the tenant's own database role, no trusted secret in the pod, dashboards as
Voila-only named servers. Paths are the images' (``hub_config/images/``), not the hub's:
both images install the workbench into the same virtualenv (``IMAGE_VENV``), so the
package folders the hub names (the dashboard profile) exist alike in a tenant's pod.
KubeSpawner is not a dependency of the workbench: the hub image installs
``jupyterhub-kubespawner`` (``hub_config/images/hub.Dockerfile``).

``load_workbench_config`` is what ``hub.extraConfig`` of ``hub_config/z2jh-values.yaml``
runs: the one-machine ``jupyterhub_config.py`` on the chart's configuration, keeping what
the chart set up for the cluster.
"""

from __future__ import annotations

import os
import runpy

from kubespawner import KubeSpawner
from traitlets import default

from workbench.errors import HubError
from workbench.hub._provision import workspace
from workbench.hub._settings import SERVICE_NAME, Settings
from workbench.hub._spawner import _TenantServer, dashboard_session

# the images' layout (hub_config/images/*.Dockerfile)
IMAGE_VENV = "/opt/workbench/venv"
IMAGE_NOTEBOOKS = "/opt/workbench/notebooks"  # the single-user image's example and dashboard notebooks
IMAGE_HUB_CONFIG = "/opt/workbench/hub_config/jupyterhub_config.py"  # in the hub image
IMAGE_HOME = "/home/jovyan"  # the chart's singleuser.storage.homeMountPath
# where the chart's hub pod gets its own address (hub.extraEnv, from the downward API)
POD_IP_ENV = "POD_IP"

# what the chart configures for the cluster and jupyterhub_config.py sets for one machine:
# the chart's value stays (where the hub listens and is reached, the proxy's API, the hub's db)
_CHART_KEEPS = (
    ("JupyterHub", "hub_bind_url"),
    ("JupyterHub", "hub_connect_url"),
    ("JupyterHub", "db_url"),
    ("ConfigurableHTTPProxy", "api_url"),
    ("ConfigurableHTTPProxy", "should_start"),
)
# one-machine settings that have no meaning in the chart's hub pod (the chart runs the proxy)
_ONE_MACHINE_ONLY = (
    ("JupyterHub", "bind_url"),
    ("JupyterHub", "pid_file"),
    ("JupyterHub", "cookie_secret_file"),
    ("ConfigurableHTTPProxy", "command"),
    ("ConfigurableHTTPProxy", "pid_file"),
)


class KubeTenantSpawner(_TenantServer, KubeSpawner):
    """A pod per tenant; its home volume holds the workspace."""

    volumes: list[dict]  # KubeSpawner's traits, replaced for dashboard servers
    volume_mounts: list[dict]

    @default("workbench_service_url")
    def _default_service_url(self) -> str:
        """The hub Service's extra port: the one-machine URL, the hub's loopback, is not the pod's."""
        return f"http://hub:{Settings.from_env().service_port}/services/{SERVICE_NAME}/"

    async def start(self):
        if dashboard_session(self.name) is not None:
            self._home_of_its_own()
        return await super().start()

    def _home_of_its_own(self) -> None:
        """A dashboard server gets an empty home of its pod's own instead of the tenant's
        volume: it runs the package's notebook on the database, needs none of the tenant's
        files, and so neither reads what was planted there nor claims a volume per session
        (the chart's volume name template names one per server)."""
        homes = {mount["name"] for mount in _listed(self.volume_mounts) if mount.get("mountPath") == IMAGE_HOME}
        self.storage_pvc_ensure = False
        self.volumes = [volume for volume in _listed(self.volumes) if volume["name"] not in homes] + [
            {"name": "dashboard-home", "emptyDir": {"sizeLimit": "256Mi"}}
        ]
        self.volume_mounts = [mount for mount in _listed(self.volume_mounts) if mount["name"] not in homes] + [
            {"name": "dashboard-home", "mountPath": IMAGE_HOME}
        ]

    def lab_command(self, settings: Settings) -> list[str]:
        return ["jupyterhub-singleuser", f"--ServerApp.root_dir={workspace(self.user.name, settings)}"]

    def dashboard_command(self, settings: Settings) -> list[str]:
        return ["python", "-m", "workbench.hub._dashboard", f"{IMAGE_NOTEBOOKS}/dashboards/session.ipynb"]


def _listed(items) -> list[dict]:
    """KubeSpawner's volumes and mounts are a list, or a dict whose values are (as the chart sets them)."""
    return list(items.values()) if isinstance(items, dict) else list(items)


def load_workbench_config(c, path: str | None = None) -> None:
    """Run the workbench's ``jupyterhub_config.py`` on the chart's configuration ``c``.

    The chart's own settings for the cluster stay (``_CHART_KEEPS``); one-machine settings
    are dropped; the chart's services and roles (``hub.services``, ``hub.loadRoles``) are kept
    beside the workbench's; the workbench service listens on the hub pod's own address (it
    binds the host of its URL: ``hub``, the Service's name, is not an address of the pod), and
    the proxy reaches it there.
    """
    kept = {(section, key): c[section][key] for section, key in _CHART_KEEPS if key in c[section]}
    services, roles = list(c.JupyterHub.get("services", [])), list(c.JupyterHub.get("load_roles", []))
    runpy.run_path(path or IMAGE_HUB_CONFIG, init_globals={"get_config": lambda: c})
    for section, key in _ONE_MACHINE_ONLY:
        c[section].pop(key, None)
    for (section, key), value in kept.items():
        c[section][key] = value
    service_port = Settings.from_env().service_port
    for service in c.JupyterHub.services:
        if service["name"] == SERVICE_NAME:
            if not os.environ.get(POD_IP_ENV):
                raise HubError(
                    f"{POD_IP_ENV} is not set: the hub pod's address (the chart sets it from the downward API)"
                )
            service["url"] = f"http://{os.environ[POD_IP_ENV]}:{service_port}"
    # the chart sets KubeSpawner.environment (singleuser.extraEnv), which would hide Spawner's
    if "environment" in c.KubeSpawner:
        c.KubeSpawner.environment = {**c.Spawner.get("environment", {}), **c.KubeSpawner.environment}
    ours = {role["name"] for role in c.JupyterHub.load_roles}
    c.JupyterHub.services = services + c.JupyterHub.services
    c.JupyterHub.load_roles = [role for role in roles if role["name"] not in ours] + c.JupyterHub.load_roles
