"""A real hub for tests and benchmarks: the launcher's own ``prepare`` and ``start`` in a
fresh data directory (embedded PostgreSQL, master key, hub sqlite), on free ports, plus
an HTTP client that signs up, logs in and follows JupyterHub's OAuth like a browser.

As root the hub runs each tenant as unix account ``jupyter-<name>``: the harness uses
random user names and deletes the accounts it made when the hub stops.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import requests

from workbench import store
from workbench.hub._launcher import Processes, prepare, start
from workbench.hub._provision import unix_name
from workbench.hub._settings import Settings

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple 9"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _notebooks(folder: Path) -> Path:
    """The repository's notebooks; a minimal session dashboard when the real one is missing."""
    target = folder / "notebooks"
    shutil.copytree(REPO / "notebooks", target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    dashboard = target / "dashboards" / "session.ipynb"
    if not dashboard.exists():
        dashboard.parent.mkdir(exist_ok=True)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(
                "import os\nfrom workbench import store\nsid = int(os.environ['WORKBENCH_SESSION_ID'])\n"
                "with store.session() as s:\n    row = s.get(store.TradingSession, sid)\n"
                "print('SESSION', sid, row.symbol if row else 'NOT VISIBLE', row.status if row else '')"
            )
        ]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, dashboard)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@dataclass
class Hub:
    settings: Settings
    processes: Processes
    passwords: dict[str, str]
    root: Path
    users: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.settings.public_url

    def new_name(self, label: str) -> str:
        name = f"{label}{secrets.token_hex(3)}"
        self.users.append(name)
        return name

    def client(self) -> Client:
        return Client(self.url)

    def login(self, name: str, password: str | None = None) -> Client:
        client = self.client()
        client.login(name, password or self.passwords.get(name, PASSWORD))
        return client

    def admin(self) -> Client:
        name = sorted(self.settings.admins)[0]
        return self.login(name, self.passwords[name])


class Client(requests.Session):
    """A browser-like session: cookies, the hub's XSRF token, OAuth consent when asked."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base
        self._logged_in = False

    def url(self, path: str) -> str:
        return self.base + path

    def xsrf(self) -> str:
        """The hub's XSRF token for this session, as its pages give it to their scripts."""
        page = self.get(
            self.url("/hub/home" if self._logged_in else "/hub/login"), headers={"Sec-Fetch-Mode": "navigate"}
        ).text
        found = re.search(r'xsrf_token: "([^"]+)"', page) or re.search(r'name="_xsrf" value="([^"]+)"', page)
        return found.group(1)

    def form(self, path: str, data: dict) -> requests.Response:
        return self.post(self.url(path), data={**data, "_xsrf": self.xsrf()}, allow_redirects=True)

    def signup(self, name: str, password: str = PASSWORD) -> requests.Response:
        return self.form(
            "/hub/signup", {"username": name, "signup_password": password, "signup_password_confirmation": password}
        )

    def login(self, name: str, password: str) -> requests.Response:
        response = self.form("/hub/login", {"username": name, "password": password})
        if not any(c.name == "jupyterhub-session-id" for c in self.cookies) or "/hub/login" in response.url:
            raise AssertionError(f"login of {name} failed: {response.status_code} {response.url}")
        self._logged_in = True
        return response

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        if method in ("POST", "PATCH") and "json" not in kwargs:
            kwargs["json"] = {}  # the hub refuses cookie-authenticated POSTs that are not JSON
        return self.request(method, self.url("/hub/api" + path), headers={"X-XSRFToken": self.xsrf()}, **kwargs)

    def open(self, path: str) -> requests.Response:
        """GET through OAuth redirects, granting JupyterHub's consent page when it shows one."""
        response = self.get(self.url(path))
        if response.status_code == 200 and "/hub/api/oauth2/authorize" in response.url and "<form" in response.text:
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', response.text))
            scopes = re.findall(r'<input type="hidden" name="scopes" value="([^"]*)"', response.text)
            response = self.post(response.url, data={"_xsrf": fields.get("_xsrf", ""), "scopes": scopes})
        return response

    def service(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the workbench service's API with the browser's cookies (OAuth done first)."""
        if not any(
            c.name.startswith("workbench-services-workbench") or c.name == "jupyterhub-services-workbench"
            for c in self.cookies
        ):
            self.open("/services/workbench/")
        xsrf = next((c.value for c in self.cookies if c.name == "_xsrf" and c.path == "/services/workbench/"), "")
        # the headers a browser's fetch() sends: they make the service check XSRF
        headers = {"X-XSRFToken": xsrf, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
        return self.request(method, self.url("/services/workbench/api/" + path), headers=headers, **kwargs)

    def start_server(self, user: str, name: str = "", timeout: float = 120.0) -> None:
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        response = self.hub_api("POST", path)
        assert response.status_code in (201, 202, 400), response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.hub_api("GET", f"/users/{user}").json()
            if model.get("servers", {}).get(name, {}).get("ready"):
                return
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{name} did not start in {timeout} s")

    def token(self, user: str) -> str:
        """A new API token of ``user`` (the caller must be logged in as them)."""
        response = self.hub_api("POST", f"/users/{user}/tokens", json={"note": "test"})
        assert response.status_code == 201, response.text
        return response.json()["token"]


def _delete_accounts(names: list[str]) -> None:
    if os.geteuid() != 0:
        return
    for name in names:
        try:
            pwd.getpwnam(unix_name(name))
        except KeyError:
            continue
        subprocess.run(["pkill", "-KILL", "-u", unix_name(name)], check=False)
        subprocess.run(["userdel", "--remove", unix_name(name)], check=False, capture_output=True)


@contextmanager
def running_hub(*, worker: bool = False, env: dict[str, str] | None = None) -> Iterator[Hub]:
    """A hub with its own data directory and ports, stopped and cleaned up afterwards."""
    root = Path(tempfile.mkdtemp(prefix="workbench-test-hub-"))
    root.chmod(0o755)  # tenants' accounts must reach the notebooks and the database socket
    tag = secrets.token_hex(3)
    admins, demo = f"adm{tag}", (f"demoa{tag}", f"demob{tag}")
    variables = {
        "WORKBENCH_HOME": str(root / "home"),
        "WORKBENCH_NOTEBOOKS": str(_notebooks(root)),
        "WORKBENCH_HUB_PORT": str(free_port()),
        "WORKBENCH_HUB_INTERNAL_PORT": str(free_port()),
        "WORKBENCH_PROXY_API_PORT": str(free_port()),
        "WORKBENCH_SERVICE_PORT": str(free_port()),
        "WORKBENCH_HUB_ADMINS": admins,
        "WORKBENCH_HUB_DEMO_TENANTS": ",".join(demo),
        **(env or {}),
    }
    hub = None
    with pytest.MonkeyPatch.context() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        for name in ("WORKBENCH_DATABASE_URL", "DATABASE_URL", store.TENANT_URL_ENV, "WORKBENCH_SERVICE_URL"):
            patch.delenv(name, raising=False)
        store.dispose()
        settings = Settings.from_env()
        try:
            passwords = prepare(settings)
            processes = start(settings, worker=worker, log_dir=settings.home)
            hub = Hub(settings, processes, passwords, root, users=[admins, *demo])
            yield hub
        finally:
            if hub is not None:
                hub.processes.stop()
            store.embedded_server().stop()
            store.dispose()
            _delete_accounts(hub.users if hub else [admins, *demo])
            shutil.rmtree(root, ignore_errors=True)


def server_environment(user: str, name: str = "") -> dict[str, str]:
    """The environment of ``user``'s running server (the oldest process with its JUPYTERHUB_* vars;
    kernels inherit them too), plus ``_uid``: the unix user it runs as."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "create_time"]):
        try:
            environ = process.environ()
            if environ.get("JUPYTERHUB_USER") == user and environ.get("JUPYTERHUB_SERVER_NAME", "") == name:
                found.append((process.info["create_time"], {**environ, "_uid": str(process.uids().real)}))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    if not found:
        raise AssertionError(f"no server process of {user}/{name}")
    return min(found, key=lambda item: item[0])[1]


def approved_tenant(hub: Hub, label: str) -> str:
    """A new tenant that signed up and was approved by an admin (approval provisions it)."""
    name = hub.new_name(label)
    hub.client().signup(name)
    admin = hub.admin()
    assert admin.get(admin.url(f"/hub/authorize/{name}")).status_code == 200
    return name


def as_tenant(name: str, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``command`` run by bash as tenant ``name``'s unix account in its home, as its JupyterLab
    terminal would run it (root only)."""
    account = pwd.getpwnam(unix_name(name))
    return subprocess.run(
        ["/bin/bash", "-c", command],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        cwd=account.pw_dir,
        env={"HOME": account.pw_dir, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def in_terminal(hub: Hub, client: Client, user: str, command: str, timeout: float = 60.0) -> tuple[int, str]:
    """``command`` typed into a terminal of ``user``'s running JupyterLab, through its REST and
    websocket APIs (what the tenant's browser does): its exit status and what it printed."""
    import asyncio
    import json

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {client.token(user)}"}
    base = hub.url.rstrip("/") + f"/user/{user}/"
    created = requests.post(base + "api/terminals", headers=headers, timeout=30)
    assert created.status_code == 200, created.text
    name, marker = created.json()["name"], f"__done_{secrets.token_hex(4)}__"

    async def typed() -> tuple[int, str]:
        socket = await websocket_connect(
            HTTPRequest(base.replace("http", "ws", 1) + f"terminals/websocket/{name}", headers=headers)
        )
        socket.write_message(json.dumps(["stdin", f"{command}; echo {marker}$?{marker}\r"]))
        printed = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(socket.read_message(), deadline - time.monotonic())
            if message is None:
                break
            kind, *payload = json.loads(message)
            printed += payload[0] if kind == "stdout" else ""
            found = re.search(rf"{marker}(\d+){marker}", printed)
            if found:
                socket.close()
                return int(found.group(1)), printed[: found.start()]
        raise AssertionError(f"the terminal of {user} did not finish {command!r} in {timeout} s: {printed[-500:]}")

    try:
        return asyncio.run(typed())
    finally:
        requests.delete(base + f"api/terminals/{name}", headers=headers, timeout=30)


def restart_server(client: Client, user: str, timeout: float = 120.0) -> None:
    """Stop ``user``'s default server (if running) and start it again: the spawner provisions first."""
    client.hub_api("DELETE", f"/users/{user}/server")
    deadline = time.monotonic() + timeout
    while client.hub_api("GET", f"/users/{user}").json().get("servers", {}).get(""):
        if time.monotonic() > deadline:
            raise AssertionError(f"server {user} did not stop in {timeout} s")
        time.sleep(0.3)
    client.start_server(user, timeout=timeout)
