"""``KubeTenantSpawner``: one pod per tenant on Kubernetes (Zero to JupyterHub).

The same rules as on one machine (``_spawner._TenantServer``): provisioning before the
first start, the tenant's own database role, no trusted secret in the pod, dashboards as
Voila-only named servers. Paths are the image's (``hub_config/z2jh-values.yaml``), not the
hub's. KubeSpawner is not a dependency of the workbench: install ``jupyterhub-kubespawner``
in the hub image.
"""
from __future__ import annotations

from kubespawner import KubeSpawner

from workbench.hub._settings import Settings
from workbench.hub._spawner import _TenantServer

# where the single-user image (hub_config/z2jh-values.yaml) keeps the workbench's notebooks
IMAGE_NOTEBOOKS = "/opt/workbench/notebooks"


class KubeTenantSpawner(_TenantServer, KubeSpawner):
    """A pod per tenant; its home volume holds the workspace."""

    def lab_command(self, settings: Settings) -> list[str]:
        return ["jupyterhub-singleuser"]

    def dashboard_command(self, settings: Settings) -> list[str]:
        return ["python", "-m", "workbench.hub._dashboard", f"{IMAGE_NOTEBOOKS}/dashboards/session.ipynb"]
