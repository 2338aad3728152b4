"""The hub deployment's settings, read from the environment in one place.

``hub_config/jupyterhub_config.py``, the launcher, the spawners and the workbench service
all read them here, so a variable means the same thing to every process. What each variable
means, its type and its default: ``workbench.settings``, rendered as ``docs/SETTINGS.md``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from workbench._home import home
from workbench.errors import HubError

SERVICE_NAME = "workbench"
DASHBOARD_PREFIX = "dash-"  # named servers called dash-<session id> run only Voila
UNIX_PREFIX = "jupyter-"  # tenant alice runs as unix account jupyter-alice (as in TLJH)
SPAWNERS = ("local", "simple", "kube")
# what the tenant's server needs to reach the service: the service's URL and the server's own
# hub token (its JUPYTERHUB_API_TOKEN, which is granted access to the service)
SERVICE_URL_ENV = "WORKBENCH_SERVICE_URL"
SESSION_ENV = "WORKBENCH_SESSION_ID"
_REPO_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# the package's own IPython/Jupyter folder for dashboard servers (see dashboard_environment)
DASHBOARD_PROFILE = Path(__file__).resolve().parent / "dashboard_profile"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise HubError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _names(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in os.environ.get(name, default).split(",") if part.strip())


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise HubError(f"{name}={raw!r} is not a number of seconds (0: never)")
    return int(raw)


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise HubError(f"{name}={raw!r}: use 1 or 0")


@dataclass(frozen=True)
class Settings:
    """Everything the hub's processes agree on; ``Settings.from_env()`` builds it."""

    home: Path
    ip: str
    port: int
    hub_port: int
    proxy_api_port: int
    service_port: int
    admins: frozenset[str]
    demo_tenants: tuple[str, ...]
    open_signup: bool
    spawner: str
    notebooks: Path
    cull_idle_after: int  # seconds; 0: JupyterLab servers are never culled
    cull_dashboards_after: int  # seconds; 0: dashboard servers are never culled

    @classmethod
    def from_env(cls) -> Settings:
        spawner = os.environ.get("WORKBENCH_HUB_SPAWNER", "").strip() or ("local" if os.geteuid() == 0 else "simple")
        if spawner not in SPAWNERS:
            raise HubError(f"WORKBENCH_HUB_SPAWNER={spawner!r}: choose one of {', '.join(SPAWNERS)}")
        if spawner == "local" and os.geteuid() != 0:
            raise HubError(
                "WORKBENCH_HUB_SPAWNER=local runs each tenant as a unix account of its own, "
                "which needs the hub to run as root; use 'simple' for development"
            )
        admins = frozenset(_names("WORKBENCH_HUB_ADMINS", "admin"))
        return cls(
            home=home(),
            ip=os.environ.get("WORKBENCH_HUB_IP", "").strip() or "127.0.0.1",  # empty: unset, never every interface
            port=_int("WORKBENCH_HUB_PORT", 8000),
            hub_port=_int("WORKBENCH_HUB_INTERNAL_PORT", 8081),
            proxy_api_port=_int("WORKBENCH_PROXY_API_PORT", 8001),
            service_port=_int("WORKBENCH_SERVICE_PORT", 8011),
            admins=admins,
            demo_tenants=_names("WORKBENCH_HUB_DEMO_TENANTS", "alice,bob"),
            open_signup=_flag("WORKBENCH_HUB_OPEN_SIGNUP"),
            spawner=spawner,
            notebooks=Path(os.environ.get("WORKBENCH_NOTEBOOKS") or _REPO_NOTEBOOKS),
            cull_idle_after=_seconds("WORKBENCH_CULL_IDLE_AFTER", 3600),
            cull_dashboards_after=_seconds("WORKBENCH_CULL_DASHBOARDS_AFTER", 600),
        )

    @property
    def hub_dir(self) -> Path:
        """The hub's own state: sqlite database, cookie secret, development users' folders."""
        path = self.home / "hub"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def public_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def service_url(self) -> str:
        """Where the service listens (direct, not through the proxy)."""
        return f"http://127.0.0.1:{self.service_port}/services/{SERVICE_NAME}/"

    @property
    def activity_interval(self) -> int:
        """How often (seconds) the hub collects servers' activity: a tenth of the shortest idle
        limit, at most JupyterHub's own 300, so an active server never looks idle to the culler."""
        limits = [limit for limit in (self.cull_idle_after, self.cull_dashboards_after) if limit]
        return max(1, min([300, *(limit // 10 for limit in limits)]))

    @property
    def dev_users_dir(self) -> Path:
        """Development mode: the tenants' workspaces, all owned by the hub's own account."""
        return self.hub_dir / "users"


def bin_path(program: str) -> str:
    """``program`` from this Python's environment (the venv's bin/), where pip put it."""
    return str(Path(sys.executable).parent / program)


def dashboard_environment() -> dict[str, str]:
    """What a dashboard server's environment pins: IPython and Jupyter read their startup
    files, configuration, kernelspecs and templates from the package's read-only
    ``dashboard_profile``, never from the owner's home; no user site-packages, no user config."""
    folder = str(DASHBOARD_PROFILE)
    return {
        "IPYTHONDIR": folder,
        "JUPYTER_CONFIG_DIR": folder,
        "JUPYTER_DATA_DIR": folder,
        "JUPYTER_PATH": folder,
        "MPLCONFIGDIR": folder,
        "JUPYTER_PREFER_ENV_PATH": "1",
        "JUPYTER_NO_CONFIG": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONSTARTUP": "",
    }
