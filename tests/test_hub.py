"""The hub over HTTP: one real JupyterHub (proxy, workbench service, embedded PostgreSQL)
for the module, started by the product's own launcher code.

Covered: sign-up needs an admin's approval, which provisions the tenant (database role,
unix account as root, workspace); a tenant's server runs as its own account with its own
database role and no trusted secret; a tenant reaches nobody else's server; every service
endpoint answers 404 for another tenant's account, session, live notebook, run, dashboard
or notification channel; the ServiceVault a tenant server uses, and its notification
channels (added, tested, listed and removed through the service); a dashboard shared read-only
(rendered by the service for the viewer; no way into the owner's servers; revocable); removing a tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from hub_harness import Hub, as_tenant, running_hub, server_environment
from loopback_notify import WebhookReceiver
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from workbench import notify, scheduler, store, vault
from workbench.errors import HubError, NotifyError, VaultError
from workbench.hub._launcher import prepare
from workbench.hub._notify import ServiceChannels
from workbench.hub._provision import unix_name
from workbench.hub._settings import Settings
from workbench.hub._vault import ServiceVault
from workbench.notify import _channels
from workbench.notify._http import ALLOW_PRIVATE_ENV
from workbench.store.models import NotificationChannel

pytestmark = pytest.mark.slow
ROOT = os.geteuid() == 0
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def hub() -> Hub:
    with running_hub(env={ALLOW_PRIVATE_ENV: "1"}) as running:  # the service sends to loopback receivers
        yield running


@pytest.fixture(scope="module")
def tenants(hub: Hub) -> dict:
    """The two demo tenants, logged in (their servers spawn on login), with API tokens."""
    a, b = hub.settings.demo_tenants
    clients = {name: hub.login(name) for name in (a, b)}
    for name, client in clients.items():
        client.start_server(name)
    tokens = {name: clients[name].token(name) for name in (a, b)}
    return {"a": a, "b": b, "clients": clients, "tokens": tokens}


def service(hub: Hub, token: str | None, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, f"{hub.url}/services/workbench/api/{path}", headers=headers, timeout=120, **kwargs)


def test_settings_are_checked(monkeypatch):
    monkeypatch.setenv("WORKBENCH_HUB_PORT", "80000")
    with pytest.raises(HubError, match="WORKBENCH_HUB_PORT='80000' is not a TCP port"):
        Settings.from_env()
    monkeypatch.setenv("WORKBENCH_HUB_PORT", "8000")
    monkeypatch.setenv("WORKBENCH_HUB_OPEN_SIGNUP", "maybe")
    with pytest.raises(HubError, match="WORKBENCH_HUB_OPEN_SIGNUP='maybe'"):
        Settings.from_env()
    monkeypatch.setenv("WORKBENCH_HUB_OPEN_SIGNUP", "1")
    monkeypatch.setenv("WORKBENCH_HUB_SPAWNER", "docker")
    with pytest.raises(HubError, match="choose one of local, simple, kube"):
        Settings.from_env()
    monkeypatch.delenv("WORKBENCH_HUB_SPAWNER")
    settings = Settings.from_env()
    assert settings.open_signup and settings.spawner == ("local" if ROOT else "simple")


def test_sign_up_waits_for_approval_which_provisions_the_tenant(hub: Hub):
    name = hub.new_name("carol")
    client = hub.client()
    client.signup(name)
    with pytest.raises(AssertionError, match="login of"):
        client.login(name, "correct horse battery staple 9")
    assert name not in {t.name for t in store.list_tenants()}

    admin = hub.admin()
    forged = admin.get(admin.url(f"/hub/authorize/{name}"), headers={"Referer": "http://evil.example/"})
    assert forged.status_code == 403  # a cross-site page cannot make the admin's browser approve
    assert admin.get(admin.url(f"/hub/authorize/{name}")).status_code == 200

    tenant = next(t for t in store.list_tenants() if t.name == name)
    assert tenant.role_name.endswith("_" + name)
    client.login(name, "correct horse battery staple 9")
    if ROOT:
        account = pwd.getpwnam(unix_name(name))
        home = os.stat(account.pw_dir)
        assert stat.S_IMODE(home.st_mode) == 0o700 and home.st_uid == account.pw_uid
        notebook = os.stat(os.path.join(account.pw_dir, "01_quickstart.ipynb"))
        assert notebook.st_uid == account.pw_uid
        assert not os.path.exists(os.path.join(account.pw_dir, "dashboards"))
    # a name that cannot be a database role and a unix account is refused at sign-up
    bad = hub.client()
    bad.signup("Eve-1")
    with pytest.raises(AssertionError, match="login of"):
        bad.login("Eve-1", "correct horse battery staple 9")


def test_tenant_server_has_its_own_role_and_no_trusted_secret(hub: Hub, tenants: dict):
    a = tenants["a"]
    env = server_environment(a)
    assert env["WORKBENCH_TENANT_DATABASE_URL"] == store.tenant_url(a)
    for trusted in (
        "WORKBENCH_DATABASE_URL",
        "DATABASE_URL",
        "WORKBENCH_MASTER_KEY",
        "WORKBENCH_MASTER_KEY_FILE",
        "WORKBENCH_DB_ROLE_SECRET",
        "WORKBENCH_HOME",
    ):
        assert trusted not in env
    assert env["WORKBENCH_SERVICE_URL"] == hub.settings.service_url
    assert env.get("JUPYTERHUB_DISABLE_USER_CONFIG") == "1"
    if ROOT:
        assert int(env["_uid"]) == pwd.getpwnam(unix_name(a)).pw_uid
        # the tenant's account cannot read the master key or the data directory
        probe = subprocess.run(
            ["runuser", "-u", unix_name(a), "--", "cat", str(hub.settings.home / "master.key")],
            capture_output=True,
            text=True,
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr


def test_a_tenant_reaches_only_its_own_server(hub: Hub, tenants: dict):
    a, b, client_b = tenants["a"], tenants["b"], tenants["clients"][tenants["b"]]
    assert client_b.open(f"/user/{b}/lab").status_code == 200  # OAuth with its own server
    assert client_b.open(f"/user/{b}/api/status").status_code == 200
    for path in (f"/user/{a}/lab", f"/user/{a}/api/contents", f"/user/{a}/api/terminals", f"/user/{a}/api/kernels"):
        assert client_b.open(path).status_code == 403, path
    token_b = {"Authorization": f"token {tenants['tokens'][b]}"}
    assert requests.get(f"{hub.url}/user/{a}/api/contents", headers=token_b).status_code == 403
    assert requests.get(f"{hub.url}/hub/api/users/{a}", headers=token_b).status_code == 404
    assert requests.post(f"{hub.url}/hub/api/users/{a}/server", headers=token_b).status_code == 404
    assert requests.post(f"{hub.url}/hub/api/shares/{b}/", headers=token_b, json={"user": a}).status_code in (403, 404)
    # a tenant gets dashboard servers only, never a second JupyterLab
    answer = requests.post(f"{hub.url}/hub/api/users/{b}/servers/lab2", headers=token_b)
    assert answer.status_code >= 400


def test_every_service_endpoint_refuses_another_tenants_records(hub: Hub, tenants: dict):
    a, b = tenants["a"], tenants["b"]
    ta, tb = tenants["tokens"][a], tenants["tokens"][b]
    created = service(
        hub,
        ta,
        "POST",
        "vault/accounts",
        json={"exchange": "binance", "api_key": "A" * 24, "secret": "S" * 32, "label": "a-main"},
    )
    assert created.status_code == 201, created.text
    account = created.json()["id"]
    session = service(hub, ta, "GET", "sessions").json()[0]["id"]  # the demo paper session
    live_id = service(hub, ta, "GET", f"live?session={session}").json()[0]["id"]  # promoted by the seeding
    with store.tenant_session(a) as db:  # a run, as a worker would record it
        run = store.NotebookRun(live_notebook_id=live_id, scheduled_for=datetime.now(UTC), status="succeeded")
        db.add(run)
        db.flush()
        run_id = run.id
    created = service(
        hub,
        ta,
        "POST",
        "notify/channels",
        json={"kind": "webhook", "name": "a-ops", "settings": {"url": "https://hooks.example.com/T0/B0"}},
    )
    assert created.status_code == 201, created.text
    channel = created.json()["id"]

    # the owner sees them
    assert service(hub, ta, "GET", f"sessions/{session}").status_code == 200
    assert service(hub, ta, "GET", f"live/{live_id}").json()["session_id"] == session
    assert [r["id"] for r in service(hub, ta, "GET", f"runs?session={session}").json()] == [run_id]
    assert [a_["id"] for a_ in service(hub, ta, "GET", "vault/accounts").json()] == [account]
    assert [(c["id"], c["target"]) for c in service(hub, ta, "GET", "notify/channels").json()] == [
        (channel, "https://hooks.example.com/…")
    ]
    for bad, error in (
        ({"settings": {}}, "a webhook channel needs url"),
        ({"session": "1"}, "field 'session'"),
        ({"secret": "x"}, "unknown fields ['secret']"),
    ):
        answer = service(hub, ta, "POST", "notify/channels", json={"kind": "webhook", "name": "a-2", **bad})
        assert answer.status_code == 400 and error in answer.json()["error"], answer.text
    # a connectivity check signs with the owner's key: it may not be sent to a host the tenant names
    for option in ({"urls": {"api": "http://127.0.0.1:9/"}}, {"hostname": "attacker.example"}):
        answer = service(hub, ta, "POST", f"vault/accounts/{account}/check", json={"ccxt_config": option})
        assert answer.status_code == 400 and "ccxt_config may set only" in answer.json()["error"]

    # the other tenant gets 404 from each of them (and its own lists stay empty of them)
    attempts = [
        ("GET", f"sessions/{session}"),
        ("GET", f"live/{live_id}"),
        ("GET", f"runs/{run_id}"),
        ("POST", f"sessions/{session}/pause"),
        ("POST", f"sessions/{session}/stop"),
        ("POST", f"vault/accounts/{account}/deactivate"),
        ("POST", f"vault/accounts/{account}/check"),
        ("GET", f"vault/accounts/{account}/keys"),
        ("DELETE", f"vault/accounts/{account}"),
        ("POST", f"dashboards/{session}"),
        ("GET", f"dashboards/{session}/shares"),
        ("POST", f"dashboards/{session}/shares"),
        ("DELETE", f"dashboards/{session}/shares/{b}"),
        ("POST", f"shared/{a}/{session}"),
        ("PATCH", f"notify/channels/{channel}"),
        ("POST", f"notify/channels/{channel}/test"),
        ("DELETE", f"notify/channels/{channel}"),
    ]
    for method, path in attempts:
        body = {"user": a} if path.endswith("/shares") else {} if method in ("POST", "PATCH") else None
        answer = service(hub, tb, method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
        assert "error" in answer.json()
    assert service(hub, tb, "GET", "vault/accounts").json() == []
    assert all(s["id"] != session for s in service(hub, tb, "GET", "sessions").json())
    assert service(hub, tb, "GET", f"runs?session={session}").json() == []
    assert service(hub, tb, "GET", "live").json() == []
    assert service(hub, tb, "GET", "notify/channels").json() == []
    # the owner's own keys never leave the service either; no token, no answer
    assert service(hub, ta, "GET", f"vault/accounts/{account}/keys").status_code == 403
    for method, path in attempts[:3]:
        assert service(hub, None, method, path).status_code == 403
    assert service(hub, ta, "GET", "vault/accounts").json()[0]["is_active"] is True
    assert service(hub, ta, "GET", "notify/channels").json()[0]["enabled"] is True
    assert service(hub, ta, "DELETE", f"notify/channels/{channel}").status_code == 200


def test_every_service_endpoint_answers_its_owner(hub: Hub, tenants: dict):
    """The happy path of each endpoint the refusal test above aims at, on records of their own
    (the demo session stays as it is for the other tests)."""
    a, b = tenants["a"], tenants["b"]
    ta = tenants["tokens"][a]
    with store.tenant_session(a) as db:
        trading = store.TradingSession(
            strategy_id=db.query(store.Strategy).first().id, exchange="paper", symbol="BTC/USD", status="paused"
        )
        db.add(trading)
        db.flush()
        session = trading.id
    scheduler.promote(
        NOTEBOOKS / "live" / "paper_channel.ipynb", session, "candle:1h", opener=lambda: store.tenant_session(a)
    )

    for action, live_status in (
        ("pause", "paused"),
        ("resume", "active"),
        ("run_now", "active"),
        ("demote", "stopped"),
    ):
        answer = service(hub, ta, "POST", f"sessions/{session}/{action}")
        assert answer.status_code == 200, (action, answer.text)
        assert answer.json()["status"] == live_status and answer.json()["session_id"] == session
    scheduler.promote(
        NOTEBOOKS / "live" / "paper_channel.ipynb", session, "candle:1h", opener=lambda: store.tenant_session(a)
    )
    stopped = service(hub, ta, "POST", f"sessions/{session}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
    assert service(hub, ta, "GET", f"sessions/{session}").json()["status"] == "stopped"
    assert service(hub, ta, "POST", f"sessions/{session}/resume").status_code == 400  # nothing live to resume

    created = service(
        hub,
        ta,
        "POST",
        "vault/accounts",
        json={"exchange": "gate", "api_key": "G" * 32, "secret": "S" * 64, "label": "spare"},
    )
    assert created.status_code == 201, created.text
    account = created.json()["id"]
    assert service(hub, ta, "POST", f"vault/accounts/{account}/deactivate").json() == {"deactivated": account}
    assert service(hub, ta, "DELETE", f"vault/accounts/{account}").status_code == 200
    assert account not in [row["id"] for row in service(hub, ta, "GET", "vault/accounts").json()]

    channel = service(
        hub,
        ta,
        "POST",
        "notify/channels",
        json={"kind": "webhook", "name": "spare", "settings": {"url": "https://hooks.example.com/T1"}},
    ).json()["id"]
    changed = service(hub, ta, "PATCH", f"notify/channels/{channel}", json={"enabled": False, "rate_limit": 5})
    assert changed.json() == {"changed": channel}, changed.text
    assert [c["enabled"] for c in service(hub, ta, "GET", "notify/channels").json() if c["id"] == channel] == [False]
    assert service(hub, ta, "DELETE", f"notify/channels/{channel}").status_code == 200

    shared = service(hub, ta, "POST", f"dashboards/{session}/shares", json={"user": b})
    assert shared.status_code == 201, shared.text
    opened = service(hub, tenants["tokens"][b], "POST", f"shared/{a}/{session}")
    assert opened.json() == {"url": f"/services/workbench/shared/{a}/{session}"}, opened.text
    assert service(hub, ta, "DELETE", f"dashboards/{session}/shares/{b}").json() == {"revoked": b}


def test_oversized_and_malformed_requests_get_a_clear_4xx_and_store_nothing(hub: Hub, tenants: dict):
    a = tenants["a"]
    ta = tenants["tokens"][a]
    before = service(hub, ta, "GET", "vault/accounts").json()
    huge = {"exchange": "binance", "api_key": "K" * (20 * 1024 * 1024), "secret": "S" * 32}
    answer = service(hub, ta, "POST", "vault/accounts", json=huge)
    assert answer.status_code == 413 and "at most 65536" in answer.json()["error"], answer.text[:300]

    def chunks():  # no Content-Length up front: the service counts what arrives
        yield b'{"exchange": "binance", "secret": "S", "api_key": "'
        for _ in range(100):
            yield b"K" * 4096
        yield b'"}'

    # Straight to the service's port, as any process on the host may: the hub's proxy passes a
    # chunked body on with a Content-Length beside it once it reuses a connection, which
    # Tornado rightly refuses as malformed (400) before the service sees it.
    answer = requests.post(
        f"http://127.0.0.1:{hub.settings.service_port}/services/workbench/api/vault/accounts",
        data=chunks(),
        timeout=60,
        headers={"Authorization": f"token {ta}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.text[:300]
    for body, error in (
        ({"exchange": "binance", "api_key": "K" * 600, "secret": "S"}, "field 'api_key' is 600"),
        ({"exchange": "binance", "api_key": 5, "secret": "S"}, "field 'api_key' must be a string"),
        ({"exchange": "binance", "secret": "S"}, "field 'api_key' is required"),
        ({"exchange": "binance", "api_key": "K", "secret": "S", "label": "x" * 101}, "field 'label' is 101"),
    ):
        answer = service(hub, ta, "POST", "vault/accounts", json=body)
        assert answer.status_code == 400 and error in answer.json()["error"], answer.text
    answer = requests.post(
        f"{hub.url}/services/workbench/api/vault/accounts",
        data=b"[1, 2",
        timeout=60,
        headers={"Authorization": f"token {ta}"},
    )
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    assert service(hub, ta, "GET", f"sessions/{'9' * 40}").status_code == 404  # no bigint: no route
    assert service(hub, ta, "GET", "vault/accounts").json() == before


def test_service_vault_is_what_a_tenant_server_uses(hub: Hub, tenants: dict, monkeypatch):
    b = tenants["b"]
    env = server_environment(b)
    monkeypatch.setenv("WORKBENCH_SERVICE_URL", env["WORKBENCH_SERVICE_URL"])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", env["JUPYTERHUB_API_TOKEN"])  # the server's own token
    vault.use(None)
    try:
        backend = vault.backend()
        assert isinstance(backend, ServiceVault)
        account = vault.add_account("binance", "B" * 24, "T" * 32, permissions="trade", label="b-main")
        assert list(vault.accounts().index) == [account]
        assert vault.accounts().loc[account, "key_hint"] == "BBBB…BB"
        with pytest.raises(VaultError, match="never receives plaintext keys"):
            vault.keys_for(account)
        with pytest.raises(VaultError, match="label 'b-main' is already used"):
            vault.add_account("binance", "C" * 24, "U" * 32, label="b-main")
        vault.deactivate(account)
        assert not vault.accounts().loc[account, "is_active"]
        vault.remove(account)
        assert vault.accounts().empty
        with pytest.raises(VaultError, match="has no exchange account"):
            vault.remove(account)
    finally:
        vault.use(None)
    # stored encrypted by the service: the database has no plaintext
    with store.owner_session() as db:
        assert db.query(store.ExchangeAccount).filter_by(label="b-main").count() == 0


def test_a_tenant_server_adds_tests_and_removes_notification_channels(hub: Hub, tenants: dict, monkeypatch):
    b = tenants["b"]
    env = server_environment(b)
    for name in ("WORKBENCH_SERVICE_URL", "JUPYTERHUB_API_TOKEN", store.TENANT_URL_ENV):
        monkeypatch.setenv(name, env[name])  # the server's own token, its own database role
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)  # only the service, which sends, allows loopback hosts
    hook, signing = "/hooks/T0/" + "Q" * 24, "W" * 32
    vault.use(None)
    try:
        with WebhookReceiver(hook, signing) as receiver:
            assert isinstance(_channels.admin(), ServiceChannels)
            channel = notify.add_webhook("ops", receiver.url, secret=signing, events=["run.failed"])
            assert notify.test("ops") == f"sent a test message to 'ops' ({receiver.base}/…)"
            [received] = receiver.received
            assert received["json"]["event"] == "test" and "'ops' works" in received["json"]["text"]
            listed = notify.channels()
            assert list(listed.index) == [channel]
            assert listed.loc[channel, ["target", "events"]].tolist() == [f"{receiver.base}/…", "run.failed"]

            notify.disable(channel)
            assert notify.channels().loc[channel, "state"] == "disabled by the user"
            notify.enable(channel)
            notify.subscribe("ops", events=["run.failed", "session.error"])
            assert notify.channels().loc[channel, ["state", "events"]].tolist() == ["ok", "run.failed, session.error"]
            receiver.fail(500)
            with pytest.raises(NotifyError, match="test message was not delivered: the webhook answered 500") as failed:
                notify.test(channel)
            with pytest.raises(NotifyError, match="name 'ops' is already used"):
                notify.add_webhook("ops", receiver.url)
            with pytest.raises(NotifyError, match="no event kind 'nope'"):
                notify.subscribe(channel, events=["nope"])
            with store.owner_session() as db:
                row = db.get(NotificationChannel, channel)
                assert hook.encode() not in row.secret_ct and signing.encode() not in row.secret_ct
            notify.remove("ops")
            assert notify.channels().empty
            with pytest.raises(NotifyError, match="no notification channel 'ops'"):
                notify.remove("ops")
            with pytest.raises(NotifyError, match=f"no notification channel {channel}"):
                notify.test(channel)
    finally:
        vault.use(None)
    # the secrets went only in request bodies: not in a message, nor the hub's and service's log
    log = (hub.settings.home / "hub.log").read_text(errors="replace")
    for secret in (hook, signing):
        assert secret not in str(failed.value) and secret not in log


def _kernel_websocket_answers(
    hub: Hub, client, path: str, page: str, msg_type: str, channel: str = "shell", content: dict | None = None
) -> bool:
    """Send one ``msg_type`` message over the dashboard's kernel websocket; whether the kernel
    answered it (a message whose parent is it came back)."""
    import re
    import uuid

    kernel = re.search(r'"?kernelId"?\s*[:=]\s*"([0-9a-f-]{36})"', page) or re.search(
        r"/api/kernels/([0-9a-f-]{36})", page
    )
    assert kernel, "the dashboard page names no kernel"
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.cookies)
    session = uuid.uuid4().hex
    url = hub.url.replace("http", "ws") + f"{path}api/kernels/{kernel.group(1)}/channels?session_id={session}"

    async def attempt() -> bool:
        socket = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookies}))
        msg_id = uuid.uuid4().hex
        socket.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": msg_type,
                        "username": "x",
                        "session": session,
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": channel,
                    "buffers": [],
                    "content": content or {},
                }
            )
        )
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(socket.read_message(), deadline - time.monotonic())
            except TimeoutError:
                break
            if message is None:
                break
            if isinstance(message, str) and msg_id in message:
                socket.close()
                return True
        socket.close()
        return False

    return asyncio.run(attempt())


def _kernel_takes_only_what_a_dashboard_needs(hub: Hub, client, path: str, page: str) -> None:
    """The websocket works (kernel_info is answered) yet takes no code and no shutdown."""
    code = {
        "code": "print('EXECUTED')",
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
    }
    assert not _kernel_websocket_answers(hub, client, path, page, "execute_request", content=code)
    assert not _kernel_websocket_answers(hub, client, path, page, "shutdown_request", "control", {"restart": False})
    # a kernel answers a comm_open to a target nobody registered with a comm_close: not this one
    foreign = {"comm_id": "c0ffee", "target_name": "anything.else", "data": {}}
    assert not _kernel_websocket_answers(hub, client, path, page, "comm_open", content=foreign)
    assert _kernel_websocket_answers(hub, client, path, page, "kernel_info_request")  # still alive and listening


def test_shared_dashboard_is_read_only_and_revocable(hub: Hub, tenants: dict):
    a, b = tenants["a"], tenants["b"]
    client_a, client_b = tenants["clients"][a], tenants["clients"][b]
    ta = tenants["tokens"][a]
    session, symbol = (service(hub, ta, "GET", "sessions").json()[0][k] for k in ("id", "symbol"))
    with store.tenant_session(a) as db:  # a second session of A: its dashboard is never shared
        other = store.TradingSession(
            strategy_id=db.query(store.Strategy).first().id, exchange="paper", symbol="BTC/USD"
        )
        db.add(other)
        db.flush()
        other_id = other.id

    planted = "import pathlib; pathlib.Path.home().joinpath('startup-ran').write_text('yes')"
    if ROOT:  # startup files and configuration in the owner's home are not what a dashboard runs
        done = as_tenant(
            a,
            f'mkdir -p .ipython/profile_default/startup .jupyter && echo "{planted}" | tee '
            ".ipython/profile_default/startup/00-planted.py > .jupyter/jupyter_server_config.py",
        )
        assert done.returncode == 0, done.stderr
    opened = service(hub, ta, "POST", f"dashboards/{session}")
    assert opened.status_code == 200, opened.text
    path = opened.json()["url"]
    assert path == f"/user/{a}/dash-{session}/"
    page = client_a.open(path)
    assert page.status_code == 200 and symbol in page.text  # rendered as the owner's role
    if ROOT:
        assert as_tenant(a, "test -e startup-ran").returncode == 1, "the dashboard ran the owner's startup file"
        assert as_tenant(a, "rm -r .ipython/profile_default/startup/00-planted.py .jupyter").returncode == 0
    # the owner's Voila kernel takes no code even from the owner's browser
    _kernel_takes_only_what_a_dashboard_needs(hub, client_a, path, page.text)
    assert service(hub, ta, "POST", f"dashboards/{other_id}").status_code == 200

    page_url = f"/services/workbench/shared/{a}/{session}"
    assert client_b.open(page_url).status_code == 404  # not shared yet
    shared = service(hub, ta, "POST", f"dashboards/{session}/shares", json={"user": b})
    assert shared.status_code == 201, shared.text
    assert shared.json() == {"url": page_url, "shared_with": b}
    assert service(hub, ta, "GET", f"dashboards/{session}/shares").json() == [b]
    assert service(hub, tenants["tokens"][b], "GET", "shared").json() == [
        {"owner": a, "session": session, "url": page_url}
    ]

    viewed = client_b.open(page_url)
    assert viewed.status_code == 200 and symbol in viewed.text  # rendered by the service, as B's role
    assert "script-src 'nonce-" in viewed.headers["Content-Security-Policy"]
    # ... and nothing of A's servers: not the dashboard, no code, no JupyterLab, no terminal, no files
    for forbidden in (
        path,
        path + "api/kernels",
        f"/user/{a}/lab",
        f"/user/{a}/api/contents",
        f"/user/{a}/api/terminals",
        f"/user/{a}/dash-{other_id}/",
        f"/user/{a}/files/01_quickstart.ipynb",
    ):
        assert client_b.open(forbidden).status_code == 403, forbidden
    assert client_b.open(f"/services/workbench/shared/{a}/{other_id}").status_code == 404

    revoked = service(hub, ta, "DELETE", f"dashboards/{session}/shares/{b}")
    assert revoked.status_code == 200, revoked.text
    assert service(hub, ta, "GET", f"dashboards/{session}/shares").json() == []
    assert client_b.open(page_url).status_code == 404  # the next reload finds nothing


def test_removing_a_tenant_keeps_records_and_revokes_access(hub: Hub):
    name = hub.new_name("dave")
    client = hub.client()
    client.signup(name)
    admin = hub.admin()
    admin.get(admin.url(f"/hub/authorize/{name}"))
    with store.tenant_session(name) as db:
        strategy = store.Strategy(name="s", template="channel", params={})
        db.add(strategy)
        db.flush()
        db.add(store.TradingSession(strategy_id=strategy.id, exchange="paper", symbol="BTC/USD", status="running"))
    url = store.tenant_url(name)
    assert admin.hub_api("POST", f"/users/{name}").status_code == 201  # as its first login would

    assert admin.hub_api("DELETE", f"/users/{name}").status_code == 204
    tenant = next(t for t in store.list_tenants(include_removed=True) if t.name == name)
    assert tenant.removed_at is not None
    with store.owner_session() as db:
        sessions = db.query(store.TradingSession).filter_by(tenant_id=tenant.id).all()
    assert [s.status for s in sessions] == ["stopped"]  # records kept, session stopped
    with pytest.raises(Exception, match="not permitted to log in|password authentication failed"):
        with store.session_scope(store.engine_for(url)) as db:
            db.execute(store.Strategy.__table__.select())
    if ROOT:
        status = subprocess.run(["passwd", "--status", unix_name(name)], capture_output=True, text=True).stdout
        assert status.split()[1] == "L"


def test_running_again_reuses_everything(hub: Hub):
    assert prepare(hub.settings) is None  # no new accounts, no new passwords
    credentials = hub.settings.hub_dir / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert set(json.loads(credentials.read_text())) == {*hub.settings.admins, *hub.settings.demo_tenants}
