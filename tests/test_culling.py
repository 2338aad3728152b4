"""Idle servers: the hub's culler stops a JupyterLab server after WORKBENCH_CULL_IDLE_AFTER and
a dashboard server after the shorter WORKBENCH_CULL_DASHBOARDS_AFTER without activity, and
keeps a server that is in use."""
from __future__ import annotations

import time

import pytest
import requests

from hub_harness import Client, approved_tenant, running_hub

pytestmark = pytest.mark.slow

IDLE_AFTER = 20  # seconds, for JupyterLab servers
DASHBOARDS_AFTER = 5  # seconds, for dashboard servers
DASHBOARD = "dash-1"
# a culler looks every second at these limits and the hub collects activity every second: a
# server goes within a few seconds of its limit
SLACK = 6.0


def _ready(client: Client, user: str, name: str = "") -> bool:
    return bool(client.hub_api("GET", f"/users/{user}").json().get("servers", {}).get(name, {}).get("ready"))


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
        idle_client.start_server(idle)
        ready = {"": time.monotonic()}
        requested[DASHBOARD] = time.monotonic()
        idle_client.start_server(idle, DASHBOARD)
        ready[DASHBOARD] = time.monotonic()

        culled: dict[str, float] = {}
        deadline = ready[""] + IDLE_AFTER + SLACK
        while time.monotonic() < deadline:
            assert requests.get(busy_api, headers=busy_headers, timeout=10).status_code == 200
            for name in ("", DASHBOARD):
                if name not in culled and not _ready(idle_client, idle, name):
                    culled[name] = time.monotonic()
            time.sleep(1)

        assert set(culled) == {"", DASHBOARD}, f"not culled in time: {culled}"
        assert DASHBOARDS_AFTER <= culled[DASHBOARD] - requested[DASHBOARD]
        assert culled[DASHBOARD] - ready[DASHBOARD] <= DASHBOARDS_AFTER + SLACK
        assert IDLE_AFTER <= culled[""] - requested[""]
        assert culled[""] - ready[""] <= IDLE_AFTER + SLACK
        assert culled[DASHBOARD] < culled[""]
        # the server in use outlived the idle one's limit and slack
        assert _ready(busy_client, busy), f"the server in use was culled after {time.monotonic() - busy_ready:.0f} s"
        assert time.monotonic() - busy_ready > IDLE_AFTER + SLACK
