"""JupyterHub configuration of the workbench: sign-up, one isolated server per tenant, the
workbench service, read-only dashboard sharing.

    jupyterhub -f hub_config/jupyterhub_config.py      # what `workbench hub` runs

Every setting comes from the environment (``workbench.settings`` declares the variables,
``docs/SETTINGS.md`` lists them: ``WORKBENCH_HOME``, ``WORKBENCH_HUB_PORT``,
``WORKBENCH_HUB_OPEN_SIGNUP``, ``WORKBENCH_HUB_SPAWNER``...). This process is on the trusted side: it holds the database
owner's credentials (to create tenant roles) and passes the master key on to the workbench
service only. The references followed: JupyterHub's "Security overview" (web security,
services, RBAC) and The Littlest JupyterHub's single-machine setup.
"""

import os
import sys
from pathlib import Path

import nativeauthenticator

from workbench.hub._settings import SERVICE_NAME, Settings, bin_path
from workbench.hub._spawner import FILE_ISOLATION_WARNING

c = get_config()  # noqa: F821 - defined by JupyterHub when it loads this file
settings = Settings.from_env()

# --- the hub's own state: a sqlite database in the data directory, apart from PostgreSQL ----
c.JupyterHub.db_url = f"sqlite:///{settings.hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(settings.hub_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(settings.hub_dir / "jupyterhub.pid")

# --- network: the public proxy, the hub behind it on loopback ---------------------------------
c.JupyterHub.bind_url = settings.public_url
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
# configurable-http-proxy from PyPI (a Python port of the node proxy): no npm needed
c.ConfigurableHTTPProxy.command = [bin_path("configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = str(settings.hub_dir / "proxy.pid")

# --- sign-up with admin approval (NativeAuthenticator) ----------------------------------------
c.JupyterHub.authenticator_class = "workbench.hub._auth.WorkbenchAuthenticator"
c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
c.Authenticator.admin_users = set(settings.admins)
# NativeAuthenticator itself refuses users an admin has not approved (JupyterHub 5+ needs an
# explicit allow rule, and approval is ours)
c.Authenticator.allow_all = True
c.NativeAuthenticator.open_signup = settings.open_signup
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
# failed logins slow the client's address down (WorkbenchAuthenticator.free_failed_logins,
# .longest_login_wait); a name is never locked, or anyone could lock any admin out

# --- one isolated server per tenant -------------------------------------------------------------
if settings.spawner == "local":
    # as root: each tenant is unix account jupyter-<name> with a private home (as TLJH does)
    c.JupyterHub.spawner_class = "workbench.hub._spawner.LocalTenantSpawner"
elif settings.spawner == "simple":
    c.JupyterHub.spawner_class = "workbench.hub._spawner.SimpleTenantSpawner"
    c.SimpleTenantSpawner.home_dir_template = str(settings.dev_users_dir / "{username}")
    print(f"\n{'!' * 88}\n{FILE_ISOLATION_WARNING}\n{'!' * 88}\n", file=sys.stderr, flush=True)
else:  # kube: see hub_config/README.md and hub_config/z2jh-values.yaml
    c.JupyterHub.spawner_class = "workbench.hub._kube.KubeTenantSpawner"
# no user configuration that changes the server (~/.jupyter is ignored by jupyterhub-singleuser)
c.Spawner.disable_user_config = True
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# named servers exist for dashboards only (dash-<session id>, Voila and nothing else)
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 20
# a server's own token may also call the workbench service (the vault behind ServiceVault)
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={SERVICE_NAME}",
]

# --- the workbench service: trusted, holds the master key and the owner's database URL -------
c.JupyterHub.services = [
    {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{settings.service_port}",
        "command": [sys.executable, "-m", "workbench.hub._service"],
        "oauth_no_confirm": True,
        # the trusted settings go to the service only; spawners strip them from tenants' servers
        "environment": {k: v for k, v in os.environ.items() if k.startswith("WORKBENCH_") or k == "DATABASE_URL"},
    }
]

# --- idle servers: stopped by the JupyterHub project's idle culler (jupyterhub-idle-culler) ----
# Its one --timeout applies to every server it culls, so it runs twice: once for the default
# (JupyterLab) servers, once for the named ones, which are dashboard servers only (the
# spawner refuses any other name). Stopping never removes a server: it starts again on the
# next visit. Live trading runs in the workers, never in these servers.
# A culler looks every tenth of its timeout, so a server goes at most 10 % after its limit.
idle_cullers = {
    name: (timeout, only)
    for name, (timeout, only) in {
        "idle-culler-lab": (settings.cull_idle_after, "--cull-named-servers=false"),
        "idle-culler-dashboards": (settings.cull_dashboards_after, "--cull-default-servers=false"),
    }.items()
    if timeout
}  # 0: that kind of server is never culled
# It runs in the hub's own folder (0700): from any other it would load an idle_culler_config.py found there.
c.JupyterHub.services += [
    {
        "name": name,
        "cwd": str(settings.hub_dir),
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={timeout}",
            f"--cull-every={max(1, timeout // 10)}",
            only,
        ],
    }
    for name, (timeout, only) in idle_cullers.items()
]
# activity (the proxy's per-route record of requests and websocket messages, and JupyterLab's
# own reports) reaches the hub often enough that an active server never looks idle
c.JupyterHub.last_activity_interval = settings.activity_interval
c.JupyterHub.activity_resolution = min(30, settings.activity_interval)
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(settings.activity_interval)}

# --- roles: a tenant may use their own servers and the workbench service, nothing else -------
c.JupyterHub.load_roles = [
    {
        "name": "user",
        "description": "A tenant: their own servers and the workbench service",
        "scopes": ["self", f"access:services!service={SERVICE_NAME}"],
    },
    # no "shares": a tenant's servers are never shared (a shared dashboard is rendered by the service)
    {
        "name": "workbench-service",
        "description": "Start tenants' dashboard servers",
        "scopes": ["read:users", "read:users:name", "servers"],
        "services": [SERVICE_NAME],
    },
    # the scopes jupyterhub-idle-culler's README names for culling servers (no admin:users: it
    # never deletes users)
    {
        "name": "idle-culler",
        "description": "Stop servers that have been idle too long",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": list(idle_cullers),
    },
]
