"""Hub benchmark: login to a ready server, and how many active tenants one machine holds.

Starts a real hub with its worker (the test harness: the launcher's own ``prepare`` and
``start`` in a fresh data directory; as root every tenant is a unix account). Then:

1. **login -> ready server**: for fresh approved tenants, the time from posting the login
   form to JupyterLab answering at ``/user/<name>/lab`` (spawn included);
2. **capacity**: tenants are added in steps, each with a running JupyterLab server and a
   running paper session whose live notebook the worker executes every minute (what the
   first demo tenant gets). At each step the first tenant's session dashboard (a Voila
   server) is rendered ``--renders`` times; the run stops at the first step whose median
   render takes over ``--limit`` seconds (3 s) or after ``--max-tenants``.

Usage: ``python benchmarks/hub.py [--steps 1,2,4,8,12,16] [--renders 3]`` (RESULTS.md, "Hub").
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("WORKBENCH_DB_ROLE_SECRET", secrets.token_hex(32))

import psutil  # noqa: E402
import requests  # noqa: E402
from hub_harness import PASSWORD, Hub, running_hub  # noqa: E402

from workbench.hub._demo import _samples  # noqa: E402


def _tenant(hub: Hub, admin, label: str):
    """A new approved tenant, logged in; (name, client, seconds from login to a ready lab)."""
    name = hub.new_name(label)
    client = hub.client()
    client.signup(name)
    admin.get(admin.url(f"/hub/authorize/{name}"))
    started = time.perf_counter()
    client.login(name, PASSWORD)  # the hub redirects to /hub/spawn: the server starts now
    deadline = started + 180
    while time.perf_counter() < deadline:
        page = client.get(client.url(f"/user/{name}/lab"))
        # JupyterLab itself, not the hub's "your server is starting" page
        if page.status_code == 200 and page.url.endswith(f"/user/{name}/lab") and "jupyter-config-data" in page.text:
            return name, client, time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"the server of {name} was not ready in 180 s")


def _render(hub: Hub, client, token: str, session: int, times: int) -> list[float]:
    headers = {"Authorization": f"token {token}"}
    url = requests.post(f"{hub.url}/services/workbench/api/dashboards/{session}", headers=headers, timeout=180).json()[
        "url"
    ]
    client.open(url)  # OAuth once
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        page = client.get(client.url(url), timeout=120)
        seconds.append(time.perf_counter() - started)
        assert page.status_code == 200, page.status_code
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,2,4,8,12,16", help="tenant counts to measure at")
    parser.add_argument("--renders", type=int, default=3)
    parser.add_argument("--limit", type=float, default=3.0, help="seconds a dashboard may take")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    with running_hub(worker=True) as hub:
        admin = hub.admin()
        tenants, spawn = [], []
        print(
            f"{'tenants':>7} {'login->lab s':>12} {'render median s':>15} {'render max s':>12} "
            f"{'load1':>6} {'used RAM GB':>11}",
            flush=True,
        )
        for target in steps:
            while len(tenants) < target:
                name, client, seconds = _tenant(hub, admin, "bench")
                spawn.append(seconds)
                _samples(name, True, hub.settings)  # strategies, a running paper session, live every minute
                tenants.append((name, client, client.token(name)))
            time.sleep(30)  # let the worker's schedule reach a steady state
            name, client, token = tenants[0]
            session = requests.get(
                f"{hub.url}/services/workbench/api/sessions", headers={"Authorization": f"token {token}"}, timeout=60
            ).json()[0]["id"]
            renders = _render(hub, client, token, session, args.renders)
            median = statistics.median(renders)
            print(
                f"{target:>7} {statistics.median(spawn):>12.1f} {median:>15.2f} {max(renders):>12.2f} "
                f"{os.getloadavg()[0]:>6.1f} {(psutil.virtual_memory().used) / 1e9:>11.1f}",
                flush=True,
            )
            if median > args.limit:
                print(f"over {args.limit} s at {target} tenants", flush=True)
                break
        print(
            f"login -> ready JupyterLab: first {spawn[0]:.1f} s, median {statistics.median(spawn):.1f} s, "
            f"max {max(spawn):.1f} s over {len(spawn)} tenants",
            flush=True,
        )


if __name__ == "__main__":
    main()
