"""Every environment variable the workbench reads, declared in one table.

The variables are read where they are used (``workbench._home``, ``workbench.store``,
``workbench.hub._settings``, ``workbench.vault``...); this module is the one place that says
which exist, what type and default each has, what it means and who sets it. The operator's
reference ``docs/SETTINGS.md`` is generated from it (``python -m workbench.settings``), and
``tests/test_settings.py`` checks both that the page is current and that the table names
exactly the variables the code reads. A new variable is declared here first.

The hub's own classes take their settings as traitlets too (``c.<class>.<name>`` in
``jupyterhub_config.py``); those are declared in ``TRAITLETS`` below, which the classes take
their help from and ``tests/test_settings.py`` holds them to.

This module imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATOR = "operator"
HUB = "set by the hub"
WORKER = "set by the worker"
HUB_AND_WORKER = "set by the hub and the worker"
JUPYTERHUB = "set by JupyterHub"
VOILA = "set by Voila"
DEVELOPMENT = "development"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the type of its value, its default (the text of it,
    ``none`` or ``generated ...``), what it does, and who sets it."""

    name: str
    type: str
    default: str
    help: str
    who: str


GROUPS: tuple[tuple[str, tuple[Setting, ...]], ...] = (
    (
        "Paths and database",
        (
            Setting(
                "WORKBENCH_HOME",
                "path",
                "`~/.workbench`",
                "The data directory, created private (0700): the embedded PostgreSQL, the generated "
                "master key and role secret, the hub's state in `<home>/hub`, the runs' folders. A "
                "tenant's server never gets it; a run's kernel gets its tenant's own runs folder.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_DATABASE_URL",
                "url (secret)",
                "none: the embedded server in `<home>/postgres`",
                "The owner role's PostgreSQL URL (`postgresql://...`); it sees every tenant's rows, so "
                "only the trusted processes (hub, service, workers) get it, never a tenant's.",
                OPERATOR,
            ),
            Setting(
                "DATABASE_URL",
                "url (secret)",
                "none",
                "The owner URL under the name hosting platforms use; read when `WORKBENCH_DATABASE_URL` is not set.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_TENANT_DATABASE_URL",
                "url (secret)",
                "none: single-user mode, tenant `local`",
                "The tenant's own database role, which row-level security confines to its rows; "
                "`store.session()` connects with it, so notebook code acts as that tenant.",
                HUB_AND_WORKER,
            ),
            Setting(
                "WORKBENCH_DB_IDLE_CLOSE",
                "seconds",
                "60",
                "How long a tenant role's pooled connection stays open unused before it is closed "
                "(the next session connects again); `0` keeps it. Server connections then follow "
                "the tenants at work, not every tenant a process served.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_DB_ROLE_SECRET",
                "secret",
                "generated in `<home>/db-role.key`",
                "The secret the tenant roles' passwords are derived from (at least 32 characters); "
                "set it when several machines must agree on it. A worker given a database URL refuses "
                "to start without it or its file: one generated there would change the tenants' "
                "passwords.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_ROLE_PREFIX",
                "text",
                "the database's name and `_`",
                "What a new tenant's database role name starts with. Role names are shared by every "
                "database of a server (63 bytes at most); the prefix keeps the workbenches on one "
                "server apart.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_POSTGRES_USER",
                "unix account",
                "`workbench-postgres`",
                "The unix account the embedded PostgreSQL runs as when the workbench runs as root "
                "(created when missing); not root, it runs as the current user.",
                OPERATOR,
            ),
            Setting(
                "NUMBA_CACHE_DIR",
                "path",
                "the package's `__pycache__`, else `~/.cache/workbench`",
                "Where the compiled engine's numba cache goes, in a folder named by the hash of its sources.",
                OPERATOR,
            ),
        ),
    ),
    (
        "Hub",
        (
            Setting(
                "WORKBENCH_HUB_CONFIG",
                "path",
                "the repository's `hub_config/jupyterhub_config.py`",
                "The JupyterHub configuration file `workbench hub` starts JupyterHub with.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_IP",
                "address",
                "`127.0.0.1`",
                "The public address of the proxy.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_PORT",
                "int (port)",
                "`8000`",
                "The public port of the proxy.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_INTERNAL_PORT",
                "int (port)",
                "`8081`",
                "The hub's own port, behind the proxy.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_PROXY_API_PORT",
                "int (port)",
                "`8001`",
                "The proxy's REST API port.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_SERVICE_PORT",
                "int (port)",
                "`8011`",
                "The workbench service's port.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_ADMINS",
                "list of user names",
                "`admin`",
                "Comma-separated hub administrators; they approve sign-ups.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_DEMO_TENANTS",
                "list of user names",
                "`alice,bob`",
                "Comma-separated demo tenants the first run creates, with sample strategies; empty for none.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_OPEN_SIGNUP",
                "bool (0/1)",
                "`0`",
                "`1` (or `true`, `yes`, `on`): a sign-up needs no administrator's approval.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_HUB_SPAWNER",
                "`local`, `simple` or `kube`",
                "`local` as root, else `simple`",
                "How tenants' servers run: `local`, one unix account per tenant (needs root); "
                "`simple`, everyone as the hub's account (development, no file isolation); `kube`, "
                "one pod per server (Zero to JupyterHub).",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_NOTEBOOKS",
                "path",
                "the repository's `notebooks/`",
                "The example notebooks copied into new workspaces; its `dashboards/session.ipynb` is "
                "what dashboard servers render.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_CULL_IDLE_AFTER",
                "int (seconds)",
                "`3600`",
                "Seconds without activity after which a tenant's JupyterLab server is stopped (`0`: "
                "never); its workspace stays and it starts again on the next visit.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_CULL_DASHBOARDS_AFTER",
                "int (seconds)",
                "`600`",
                "Seconds without activity after which a dashboard server (`dash-<session id>`) is stopped "
                "(`0`: never); "
                "opening the dashboard starts it again.",
                OPERATOR,
            ),
            Setting(
                "POD_IP",
                "address",
                "none (required with `kube`)",
                "The hub pod's own address, where the workbench service listens on Kubernetes; the "
                "chart's values (`hub_config/z2jh-values.yaml`) set it from the pod's status.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_SERVICE_URL",
                "url",
                "none",
                "The workbench service, for a tenant's server: when set, the vault and the "
                "notification channels go through the service instead of the database.",
                HUB,
            ),
        ),
    ),
    (
        "Vault and keys",
        (
            Setting(
                "WORKBENCH_MASTER_KEY",
                "secret",
                "none",
                "The master keyring: `VERSION:KEY` entries (32 bytes in base64) separated by commas "
                "or spaces, a bare key being version 1. Trusted processes only.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_MASTER_KEY_FILE",
                "path",
                "none: `<home>/master.key`, generated",
                "A keyring file, one `VERSION:KEY` per line, readable by its owner only; read when "
                "`WORKBENCH_MASTER_KEY` is not set.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_EGRESS_IPS",
                "list of IP addresses",
                "none",
                "Comma-separated addresses the workbench reaches exchanges from; an exchange key "
                "restricted to addresses that lack one of them is flagged.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_ALLOW_WITHDRAWAL_KEYS",
                "bool (0/1)",
                "`0`",
                "`1`: exchange keys that may withdraw funds are accepted; by default they are refused.",
                OPERATOR,
            ),
            Setting(
                "WORKBENCH_VAULT_ROTATE_PAUSE_AFTER",
                "int",
                "`0`: no pause",
                "Stops `workbench vault rotate` after re-wrapping that many tenants (accounts with "
                "`--tenant`), to test an interrupted rotation.",
                DEVELOPMENT,
            ),
        ),
    ),
    (
        "Scheduler and worker",
        (
            Setting(
                "WORKBENCH_SESSION_ID",
                "int",
                "none",
                "The trading session a dashboard server shows; set, the page's query string cannot switch to another.",
                HUB,
            ),
            Setting(
                "QUERY_STRING",
                "text",
                "none",
                "The dashboard page's query string; `?session=N` picks the session when "
                "`WORKBENCH_SESSION_ID` is not set.",
                VOILA,
            ),
        ),
    ),
    (
        "Notifications",
        (
            Setting(
                "WORKBENCH_NOTIFY_ALLOW_PRIVATE",
                "bool (0/1)",
                "`0`",
                "`1` (nothing else): notifications may be delivered to hosts that resolve to private "
                "or loopback addresses; by default only public addresses are reached.",
                OPERATOR,
            ),
        ),
    ),
    (
        "Set by JupyterHub",
        (
            Setting(
                "JUPYTERHUB_API_URL",
                "url",
                "none",
                "The hub's REST API, which the workbench service calls.",
                JUPYTERHUB,
            ),
            Setting(
                "JUPYTERHUB_API_TOKEN",
                "secret",
                "none",
                "The process's hub token: the service's for the hub's API, a tenant server's for "
                "calling the workbench service.",
                JUPYTERHUB,
            ),
            Setting(
                "JUPYTERHUB_SERVICE_URL",
                "url",
                "none",
                "Where the workbench service or a dashboard server listens.",
                JUPYTERHUB,
            ),
            Setting(
                "JUPYTERHUB_SERVICE_PREFIX",
                "url path",
                "`/services/workbench/` for the service",
                "The path the proxy routes to the workbench service or a dashboard server.",
                JUPYTERHUB,
            ),
            Setting(
                "JUPYTERHUB_BASE_URL",
                "url path",
                "`/`",
                "The hub's base path, for the service's links to tenants' servers.",
                JUPYTERHUB,
            ),
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = tuple(setting for _, group in GROUPS for setting in group)


@dataclass(frozen=True)
class Trait:
    """One configurable traitlet of the hub's own classes: which classes have it, its name,
    type, default and meaning (the trait's ``help``)."""

    classes: tuple[str, ...]
    name: str
    type: str
    default: str
    help: str


SPAWNERS = ("LocalTenantSpawner", "SimpleTenantSpawner", "KubeTenantSpawner")
TRAITLETS: tuple[Trait, ...] = (
    Trait(
        ("WorkbenchAuthenticator",),
        "free_failed_logins",
        "int",
        "5",
        "Failed logins a client address has before each further attempt must wait.",
    ),
    Trait(
        ("WorkbenchAuthenticator",),
        "longest_login_wait",
        "int",
        "300",
        "The longest wait, in seconds, between an address's login attempts (the wait doubles up to it).",
    ),
    Trait(
        ("WorkbenchAuthenticator",),
        "trusted_proxies",
        "list of text",
        "none",
        "Addresses of proxies in front of the hub's own, skipped in `X-Forwarded-For` to find the client's address.",
    ),
    Trait(
        SPAWNERS,
        "notebooks_dir",
        "path",
        "`WORKBENCH_NOTEBOOKS`, else the notebooks shipped with the workbench",
        "The folder whose notebooks a new tenant's workspace starts with; its "
        "`dashboards/session.ipynb` is what every dashboard server renders.",
    ),
    Trait(
        SPAWNERS,
        "workbench_service_url",
        "url",
        "the service on the hub's loopback (`WORKBENCH_SERVICE_PORT`); on Kubernetes the hub Service's port",
        "The workbench service's URL as a tenant's server reaches it, given to the server as `WORKBENCH_SERVICE_URL`.",
    ),
)


def trait_help(name: str) -> str:
    """The ``help`` of traitlet ``name`` (the classes declare it with this)."""
    return next(t.help for t in TRAITLETS if t.name == name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    """The operator's reference, ``docs/SETTINGS.md``, as Markdown."""
    lines = [
        "# Settings reference",
        "",
        "Every environment variable the workbench reads, with its type, its default and who sets "
        "it. Operators set theirs in the hub's and the workers' environment; the others are set "
        "for the processes that need them. This page is generated from `workbench/settings.py` "
        "(`python -m workbench.settings > docs/SETTINGS.md`); edit that file, not this one.",
    ]
    for title, group in GROUPS:
        lines += [
            "",
            f"## {title}",
            "",
            "| variable | type | default | set by | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for s in group:
            cells = (f"`{s.name}`", s.type, s.default, s.who, s.help)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        "## JupyterHub configuration",
        "",
        "The hub's own classes take their settings as traitlets, set in `jupyterhub_config.py` "
        "(`c.<class>.<name> = value`) like JupyterHub's; `jupyterhub --help-all` lists them too.",
        "",
        "| class | traitlet | type | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in TRAITLETS:
        cells = (", ".join(f"`{c}`" for c in t.classes), f"`{t.name}`", t.type, t.default, t.help)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
