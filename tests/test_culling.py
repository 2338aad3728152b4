"""Idle servers: the hub's culler stops a JupyterLab server after WORKBENCH_CULL_IDLE_AFTER and
a dashboard server after the shorter WORKBENCH_CULL_DASHBOARDS_AFTER without activity, and
keeps a server that is in use."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests
from hub_harness import Client, approved_tenant, running_hub

pytestmark = pytest.mark.slow

IDLE_AFTER = 25  # seconds, for JupyterLab servers
DASHBOARDS_AFTER = 5  # seconds, for dashboard servers
DASHBOARD = "dash-1"
# a culler looks every second or two at these limits and the hub collects activity every
# second: a server goes within a few seconds of its limit, counted from its last activity as
# the hub records it (on a loaded machine a new server's first report comes late)
SLACK = 10.0


def _servers(client: Client, user: str) -> dict[str, dict]:
    """``user``'s running or starting servers by name (``""``: JupyterLab); a stopped one is absent."""
    return client.hub_api("GET", f"/users/{user}").json().get("servers", {})


def test_idle_servers_are_culled_after_their_kinds_limit_and_a_used_server_is_kept():
    env = {"WORKBENCH_CULL_IDLE_AFTER": str(IDLE_AFTER), "WORKBENCH_CULL_DASHBOARDS_AFTER": str(DASHBOARDS_AFTER)}
    with running_hub(env=env) as hub:
        services = hub.admin().hub_api("GET", "/services").json()
        for name in ("idle-culler-lab", "idle-culler-dashboards"):
            assert services[name]["roles"] == ["idle-culler"], services[name]

        idle, busy = approved_tenant(hub, "idle"), approved_tenant(hub, "busy")
        busy_client = hub.login(busy)  # logging in starts the JupyterLab server
        busy_client.start_server(busy)
        busy_ready = time.monotonic()
        busy_api = f"{hub.url}/user/{busy}/api/contents"
        busy_headers = {"Authorization": f"token {busy_client.token(busy)}"}
        requested = {"": time.monotonic()}
        idle_client = hub.login(idle)
        # the dashboard is not waited for: it may be culled as soon as it is ready
        requested[DASHBOARD] = time.monotonic()
        response = idle_client.hub_api("POST", f"/users/{idle}/servers/{DASHBOARD}")
        assert response.status_code in (201, 202), response.text
        idle_client.start_server(idle)
        lab_ready = time.monotonic()

        culled: dict[str, float] = {}
        last_active = lab_ready  # the lab's last activity the hub recorded (monotonic clock)
        while time.monotonic() < last_active + IDLE_AFTER + SLACK:
            assert requests.get(busy_api, headers=busy_headers, timeout=10).status_code == 200
            running = _servers(idle_client, idle)
            if running.get("", {}).get("last_activity"):
                recorded = datetime.fromisoformat(running[""]["last_activity"]).timestamp()
                last_active = max(last_active, time.monotonic() - (time.time() - recorded))
            for name in ("", DASHBOARD):
                if name not in culled and name not in running:
                    culled[name] = time.monotonic()
            if len(culled) == 2:
                break
            time.sleep(1)

        assert set(culled) == {"", DASHBOARD}, f"not culled in time: {culled}"
        log = (hub.settings.home / "hub.log").read_text()
        assert f"Culling server {idle}/{DASHBOARD} (inactive" in log
        assert f"Culling server {idle} (inactive" in log
        assert DASHBOARDS_AFTER <= culled[DASHBOARD] - requested[DASHBOARD]
        assert culled[DASHBOARD] < culled[""], "the dashboard server outlived the JupyterLab server's longer limit"
        assert IDLE_AFTER <= culled[""] - requested[""]
        assert culled[""] - last_active <= IDLE_AFTER + SLACK
        # the server in use outlives the idle one's limit and slack
        while time.monotonic() - busy_ready <= IDLE_AFTER + SLACK:
            assert requests.get(busy_api, headers=busy_headers, timeout=10).status_code == 200
            time.sleep(1)
        assert _servers(busy_client, busy).get("", {}).get("ready"), "the server in use was culled"
