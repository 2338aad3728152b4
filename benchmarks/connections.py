"""Connections benchmark: which process holds how many PostgreSQL connections, as which role,
and what that means for 100 and 1,000 tenants.

Starts a real hub with its worker (the test harness: the launcher's own ``prepare`` and
``start`` in a fresh data directory, embedded PostgreSQL; as root every tenant is a unix
account), then walks through what tenants do, sampling ``pg_stat_activity`` (as the server's
superuser, every ``--interval`` seconds) all along:

1. the hub, the workbench service and the worker, before any tenant does anything;
2. a tenant whose JupyterLab server runs, then a kernel of it that used the store
   (``wb.list_strategies()``): the idle tenant;
3. that tenant and a second one calling the workbench service's API;
4. the first demo tenant's promoted paper session: runs on the worker (``run_now``): the
   active tenant;
5. that session's dashboard (a Voila server ``dash-<id>``): two page views (the OAuth round
   trip renders it once, a second GET again), then the same a minute later.

Every backend is attributed to the process on the other end of its unix socket (``ss -xp``:
the peer of the backend's socket), and that process to a component by its command line
(and its parent's, for kernels). A phase's "held" figure is what is open at its end, after a
pause; "peak" is the most seen at once during it. Then the memory of the idle backends of
each component (``/proc/<pid>/smaps_rollup``), the server's settings, the CPU a new tenant
connection costs (``/proc/<pid>/schedstat``), and the connections and memory for 100 and
1,000 tenants under the assumptions at the end of this file. Counts, memory and CPU time are
meaningful on a busy machine; wall times are not measured.

Usage: ``python benchmarks/connections.py [--interval 0.2] [--runs 3] [--json FILE]``
(RESULTS.md, "Connections and capacity"; about 5 minutes, as root).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("WORKBENCH_DB_ROLE_SECRET", secrets.token_hex(32))

import psutil  # noqa: E402
import psycopg  # noqa: E402
import requests  # noqa: E402
from hub_harness import Hub, approved_tenant, running_hub  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from workbench import store  # noqa: E402

# component names, in the order of the table
HUB, SERVICE, WORKER_POOLS, WORKER_LISTEN, RUN, LAB, LAB_KERNEL, DASH, DASH_KERNEL, OTHER = (
    "hub (JupyterHub process)",
    "workbench service",
    "worker: owner engine + procrastinate pool",
    "worker: procrastinate LISTEN",
    "worker: a run's kernel (slot)",
    "tenant JupyterLab server",
    "tenant kernel (JupyterLab)",
    "dashboard server (Voila)",
    "dashboard kernel",
    "other",
)
ORDER = [HUB, SERVICE, WORKER_POOLS, WORKER_LISTEN, RUN, LAB, LAB_KERNEL, DASH, DASH_KERNEL, OTHER]


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def _parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def classify(pid: int) -> str:
    """The component a client process belongs to, from its command line (kernels: their parent's)."""
    cmd = _cmdline(pid)
    if "workbench.scheduler._zygote" in cmd:  # the zygote's forks: slots and their kernels
        return RUN
    if "ipykernel" in cmd:
        parent = _cmdline(_parent(pid) or 0)
        return DASH_KERNEL if "workbench.hub._dashboard" in parent else LAB_KERNEL
    if "workbench.hub._dashboard" in cmd:
        return DASH
    if "workbench.hub._service" in cmd:
        return SERVICE
    if "jupyterhub-singleuser" in cmd:
        return LAB
    if re.search(r"workbench(\.cli)? worker", cmd):
        return "worker"  # split by the backend's last query (see Sampler)
    if "jupyterhub" in cmd:
        return HUB
    return OTHER


def unix_peers() -> tuple[dict[int, int], dict[int, int]]:
    """From ``ss -xpn``: socket inode -> owning pid, and socket inode -> its peer's inode."""
    output = subprocess.run(["ss", "-xpnH"], capture_output=True, text=True, check=False).stdout
    owner, peer = {}, {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[5].isdigit() or not fields[7].isdigit():
            continue
        inode, other = int(fields[5]), int(fields[7])
        peer[inode] = other
        found = re.search(r"pid=(\d+)", line)
        if found:
            owner[inode] = int(found.group(1))
    return owner, peer


def backend_clients(backends: set[int]) -> dict[int, int]:
    """backend pid -> the pid of the client process at the other end of its socket."""
    owner, peer = unix_peers()
    clients = {}
    for inode, pid in owner.items():
        if pid in backends and peer.get(inode) in owner:
            clients[pid] = owner[peer[inode]]
    return clients


@dataclass(frozen=True)
class Row:
    """One client backend: its component, role, state, pid, its client's pid and last query."""

    kind: str
    role: str
    state: str
    backend: int
    client: int
    query: str


@dataclass
class Sampler:
    """Samples the server's client backends in a thread; attributes each to a component."""

    url: str  # libpq URL of the superuser on the workbench database
    interval: float
    component: dict[int, str] = field(default_factory=dict)  # backend pid -> component
    client: dict[int, int] = field(default_factory=dict)  # backend pid -> client pid
    phase: str = "start"
    peaks: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.conn = psycopg.connect(self.url, autocommit=True)

    def rows(self) -> list[Row]:
        """Every client backend of the workbench database but ours and the benchmark's own
        (its ``prepare`` and store calls)."""
        with self._lock:
            found = self.conn.execute(
                "SELECT pid, usename, coalesce(state, '?'), coalesce(query, '') FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchall()
        new = {pid for pid, *_ in found} - set(self.component)
        if new:
            for pid, client in backend_clients(new).items():
                self.client[pid] = client
                self.component[pid] = "benchmark" if client == os.getpid() else classify(client)
        result = []
        for pid, role, state, query in found:
            kind = self.component.get(pid)
            if kind is None or kind == "benchmark":
                continue  # gone before it was seen, or ours
            if kind == "worker":
                # procrastinate listens on a connection of its own (LISTEN first, then a
                # "SELECT 1" now and then); its pool's and the owner engine's sessions both
                # end with COMMIT, so those two are counted together
                kind = WORKER_LISTEN if query.upper().startswith("LISTEN") else WORKER_POOLS
                self.component[pid] = kind
            result.append(Row(kind, role, state, pid, self.client[pid], query))
        return result

    def sample(self) -> list[Row]:
        rows = self.rows()
        peaks = self.peaks[self.phase]
        for key, count in Counter((row.kind, row.role) for row in rows).items():
            peaks[key] = max(peaks[key], count)
        return rows

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a failed sample is reported, the next one retries
                print(f"sample failed: {exc}", file=sys.stderr)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.conn.close()


@dataclass
class Phase:
    name: str
    held: list[Row]
    peak: Counter

    def count(self, kind: str, role: str | None = None) -> int:
        return sum(row.kind == kind and (role is None or row.role == role) for row in self.held)

    def processes(self, kind: str) -> int:
        return len({row.client for row in self.held if row.kind == kind})

    def peak_of(self, kind: str) -> int:
        return sum(count for (k, _), count in self.peak.items() if k == kind)


def settle(sampler: Sampler, phase: str, seconds: float) -> Phase:
    """Wait, then what is held now (the peak counts every sample of the phase)."""
    time.sleep(seconds)
    rows = sampler.sample()
    held = Counter((row.kind, row.role) for row in rows)
    print(f"[{phase}] held: {dict(held)}; peak: {dict(sampler.peaks[phase])}", flush=True)
    return Phase(phase, rows, Counter(sampler.peaks[phase]))


def roles_of() -> dict[str, str]:
    """role name -> tenant name, and the owner role -> "owner"."""
    labels = {t.role_name: t.name for t in store.list_tenants()}
    return {make_url(store.database_url()).username: "owner", **labels}


def kernel_execute(hub: Hub, token: str, user: str, code: str, timeout: float = 180.0) -> tuple[str, str]:
    """Start a kernel in ``user``'s JupyterLab (REST API) and run ``code`` in it (websocket),
    as the tenant's browser would; (kernel id, what it printed). The kernel keeps running."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    base = hub.url.rstrip("/") + f"/user/{user}/"
    created = requests.post(base + "api/kernels", headers=headers, json={"name": "python3"}, timeout=120)
    assert created.status_code in (200, 201), created.text
    kernel = created.json()["id"]

    async def run() -> str:
        socket = await websocket_connect(
            HTTPRequest(base.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels", headers=headers)
        )
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        socket.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": user,
                        "session": session,
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        printed = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(socket.read_message(), deadline - time.monotonic())
            if message is None:
                break
            msg = json.loads(message)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg.get("content", {})
            if kind == "stream":
                printed += content.get("text", "")
            elif kind == "error":
                printed += f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "execute_reply":
                socket.close()
                return printed
        raise AssertionError(f"the kernel of {user} did not finish in {timeout} s: {printed[-500:]}")

    return kernel, asyncio.run(run())


def service(hub: Hub, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/services/workbench/api/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=180,
        **kwargs,
    )


def wait_runs(hub: Hub, token: str, session: int, count: int, timeout: float = 300.0) -> int:
    """Wait until ``count`` runs of ``session`` have ended; how many have."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = service(hub, token, "GET", f"runs?session={session}&limit=50").json()
        done = sum(run.get("status") not in ("queued", "running") for run in runs)
        if done >= count:
            return done
        time.sleep(1.0)
    raise AssertionError(f"{count} runs of session {session} did not end in {timeout} s")


def backend_memory(pid: int) -> dict[str, float]:
    """MB of one backend (``/proc/<pid>/smaps_rollup``): RSS, PSS, and private (USS: what it
    alone costs; the rest of its RSS is the server's shared memory and binary)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "private": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def _cpu_ns(pid: int) -> int:
    """CPU time process ``pid`` has used, in ns (``/proc/<pid>/schedstat``: exact, unlike ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def connection_cost(url: str, cycles: int) -> dict[str, float]:
    """What a new tenant connection costs (NullPool pays it per session), against a query on an
    open one (a pool): CPU ms of the server's backend (SCRAM, catalog caches, the query)
    and of this client (libpq's SCRAM), per connection; times of day are not measured."""
    query = "SELECT count(*) FROM strategies"  # row-level security applies
    server, client = [], []
    for _ in range(cycles):
        started = time.process_time_ns()
        with psycopg.connect(url) as conn:
            conn.execute(query).fetchone()
            client.append(time.process_time_ns() - started)
            server.append(_cpu_ns(conn.info.backend_pid))
    with psycopg.connect(url) as conn:
        conn.execute(query).fetchone()
        before = _cpu_ns(conn.info.backend_pid)
        for _ in range(cycles):
            conn.execute(query).fetchone()
        pooled = (_cpu_ns(conn.info.backend_pid) - before) / cycles
    return {
        "server_new_ms": statistics.median(server) / 1e6,
        "client_new_ms": statistics.median(client) / 1e6,
        "server_query_ms": pooled / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=3, help="runs of the active tenant to sample")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before a phase's held count")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    phases: list[Phase] = []
    with running_hub(worker=True) as hub:
        superuser = store.embedded_server().url(role="postgres", database="workbench")
        sampler = Sampler(make_url(superuser).set(drivername="postgresql").render_as_string(False), args.interval)
        sampler.start()
        try:
            sampler.phase = "1 started: hub, service, worker"
            phases.append(settle(sampler, sampler.phase, 20))

            # 2. the idle tenant: a JupyterLab server, then a kernel that used the store
            idle = approved_tenant(hub, "idle")
            client = hub.login(idle)
            token = client.token(idle)
            sampler.phase = "2a idle tenant: JupyterLab running"
            client.start_server(idle)
            phases.append(settle(sampler, sampler.phase, args.settle))
            sampler.phase = "2b idle tenant: a kernel used the store"
            _, printed = kernel_execute(
                hub, token, idle, "import workbench as wb\nprint('STRATEGIES', len(wb.list_strategies()))"
            )
            assert "STRATEGIES" in printed, printed
            phases.append(settle(sampler, sampler.phase, args.settle))

            # 3. the workbench service, called by the idle tenant and by one without a server
            sampler.phase = "3 service API called by 2 tenants"
            other = approved_tenant(hub, "other")
            other_token = hub.login(other).token(other)
            for who in (token, other_token):
                assert service(hub, who, "GET", "sessions").status_code == 200
            phases.append(settle(sampler, sampler.phase, args.settle))

            # 4. the active tenant: the first demo tenant's promoted paper session, run now
            active = hub.settings.demo_tenants[0]
            active_client = hub.login(active)
            active_token = active_client.token(active)
            session = service(hub, active_token, "GET", "sessions").json()[0]["id"]
            sampler.phase = f"4 active tenant: {args.runs} runs on the worker"
            done = wait_runs(hub, active_token, session, 0)
            for _ in range(args.runs):
                answer = service(hub, active_token, "POST", f"sessions/{session}/run_now")
                assert answer.status_code < 300, answer.text
                done = wait_runs(hub, active_token, session, done + 1)
            phases.append(settle(sampler, sampler.phase, args.settle))

            # 5. its dashboard, rendered once; and a minute later
            sampler.phase = "5a dashboard rendered"
            url = service(hub, active_token, "POST", f"dashboards/{session}").json()["url"]
            active_client.open(url)
            page = active_client.get(active_client.url(url), timeout=180)
            assert page.status_code == 200, page.status_code
            phases.append(settle(sampler, sampler.phase, args.settle))
            sampler.phase = "5b dashboard, 60 s later"
            phases.append(settle(sampler, sampler.phase, 60))

            # memory of idle backends, per component; the server's settings; a new connection's cost
            memory = defaultdict(list)
            for row in phases[-1].held:
                if row.state == "idle":
                    try:
                        memory[row.kind].append(backend_memory(row.backend))
                    except OSError:
                        pass
            for row in phases[-1].held:
                if row.kind in (WORKER_POOLS, WORKER_LISTEN):
                    print(f"  worker backend {row.backend} ({row.kind}): {row.state}, last query {row.query[:70]!r}")
            with psycopg.connect(sampler.url) as conn:
                settings = dict(
                    conn.execute(
                        "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name IN "
                        "('max_connections', 'superuser_reserved_connections', 'shared_buffers', 'work_mem')"
                    ).fetchall()
                )
                settings["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
            labels = roles_of()
            sampler.stop()
            tenant_libpq = make_url(store.tenant_url(idle)).set(drivername="postgresql")
            cost = connection_cost(tenant_libpq.render_as_string(hide_password=False), 20)
        finally:
            if sampler.thread.is_alive():
                sampler.stop()

    tenants = {idle: "idle", other: "other", active: "active"}
    measured = report(phases, labels, tenants, memory, settings, cost)
    if args.json:
        args.json.write_text(json.dumps(measured, indent=1, default=str))


def _role(role: str, labels: dict[str, str], tenants: dict[str, str]) -> str:
    name = labels.get(role, role)
    return "owner" if name == "owner" else f"tenant ({tenants.get(name, name)})"


def report(phases, labels, tenants, memory, settings, cost) -> dict:
    print("\nPostgreSQL " + ", ".join(f"{k} = {v}" for k, v in sorted(settings.items())))
    print("\nclient backends held at the end of each phase (peak seen during it), by component and role")
    for phase in phases:
        print(f"\n{phase.name}")
        keys = {(row.kind, row.role) for row in phase.held} | set(phase.peak)
        for kind, role in sorted(keys, key=lambda k: (ORDER.index(k[0]), _role(k[1], labels, tenants))):
            held = phase.count(kind, role)
            print(f"  {kind:<42} {_role(role, labels, tenants):<18} {held:>3} ({phase.peak[(kind, role)]})")
        print(f"  {'total':<36} {'':<18} {len(phase.held):>3}")

    by_name = {phase.name[:2].strip(): phase for phase in phases}
    lab, kernel, api, runs, dash, later = (by_name[k] for k in ("2a", "2b", "3", "4", "5a", "5b"))
    tenant_roles_in_service = {row.role for row in api.held if row.kind == SERVICE and labels.get(row.role) != "owner"}
    unit = {  # connections per unit, as measured
        "hub": max(p.count(HUB) for p in phases),
        "service_owner": max(sum(r.kind == SERVICE and labels.get(r.role) == "owner" for r in p.held) for p in phases),
        "service_per_tenant": (
            api.count(SERVICE) - sum(labels.get(r.role) == "owner" for r in api.held if r.kind == SERVICE)
        )
        / max(1, len(tenant_roles_in_service)),
        "worker_held": max(p.count(WORKER_POOLS) + p.count(WORKER_LISTEN) for p in phases),
        "worker_peak": max(p.peak_of(WORKER_POOLS) + p.peak_of(WORKER_LISTEN) for p in phases),
        "lab_server": lab.count(LAB),
        "kernel": kernel.count(LAB_KERNEL) / max(1, kernel.processes(LAB_KERNEL)),
        "run_peak": runs.peak_of(RUN),
        "dashboard_server": dash.count(DASH),
        "dashboard_views": dash.processes(DASH_KERNEL),  # a kernel per page view
        "dashboard_per_view": dash.count(DASH_KERNEL) / max(1, dash.processes(DASH_KERNEL)),
        "dashboard_60s": later.count(DASH) + later.count(DASH_KERNEL),
    }
    print("\ncomponent -> connections, roles (measured)")
    table = [
        (HUB, f"{unit['hub']} held", "owner"),
        (
            SERVICE,
            f"{unit['service_owner']} + {unit['service_per_tenant']:g} per tenant it served, held",
            "owner; each tenant",
        ),
        ("worker (owner engine + procrastinate)", f"{unit['worker_held']} held, peak {unit['worker_peak']}", "owner"),
        (RUN, f"{unit['run_peak']} while a run runs, 0 after", "the run's tenant"),
        (LAB, f"{unit['lab_server']}", "-"),
        (LAB_KERNEL, f"{unit['kernel']:g} per kernel that used the store, held", "its tenant"),
        (DASH, f"{unit['dashboard_server']}", "-"),
        (
            DASH_KERNEL,
            f"{unit['dashboard_per_view']:g} per page view ({unit['dashboard_views']} views: "
            f"{unit['dashboard_60s']} still held 60 s later)",
            "its tenant",
        ),
    ]
    for kind, count, roles in table:
        print(f"  {kind:<40} {count:<50} {roles}")

    mem = {kind: {k: statistics.mean(m[k] for m in values) for k in values[0]} for kind, values in memory.items()}
    print("\nmemory of an idle backend (mean over the idle backends of each component), MB")
    for kind in ORDER:
        if kind in mem:
            m = mem[kind]
            print(
                f"  {kind:<42} RSS {m['rss']:6.1f}  PSS {m['pss']:5.1f}  private {m['private']:5.1f}  ({len(memory[kind])})"
            )
    print(
        f"\na new tenant connection (connect, SCRAM, one RLS query, close): server backend CPU "
        f"{cost['server_new_ms']:.2f} ms, client CPU {cost['client_new_ms']:.2f} ms (median of 20); "
        f"the same query on an open connection: server CPU {cost['server_query_ms']:.3f} ms"
    )
    private = max(m["private"] for m in mem.values()) if mem else 0.0
    pss = max(m["pss"] for m in mem.values()) if mem else 0.0
    capacity(unit, private, pss)
    return {"unit": unit, "memory": mem, "settings": settings, "cost": cost}


# Assumptions of the capacity figures (RESULTS.md explains them): shares of all tenants
LAB_SHARE = 0.20  # JupyterLab running (used within the culler's hour) at the busiest hour
KERNELS_PER_LAB = 2  # kernels per running JupyterLab that used the store
DASHBOARD_SHARE = 0.10  # a dashboard page open at that hour (its kernel lives while the page is open)
LIVE_SHARE = 0.30  # tenants with a live paper/exchange session (runs every minute)
SERVICE_SHARE = 1.00  # tenants that called the workbench service since it started (it keeps each)
LIVE_PER_WORKER = 200  # 1-minute live notebooks one 2-core worker machine keeps up with
# bounds from the code: owner engine pool 5 + overflow 10; procrastinate's pool concurrency + 2 and
# its LISTEN connection; a run per concurrency slot
WORKER_BOUND = 15 + 12 + 1 + 10
IN_QUERY_SHARE = 0.05  # with pools cut: share of the working tenants inside a transaction at once


def capacity(unit: dict, private_mb: float, pss_mb: float) -> None:
    """Connections and backend memory for 100 and 1,000 tenants: the code as it is, and with
    tenant connections closed after each session (NullPool)."""
    print(
        f"\ncapacity (assumed: JupyterLab {LAB_SHARE:.0%} x {KERNELS_PER_LAB} kernels, dashboards "
        f"{DASHBOARD_SHARE:.0%}, live {LIVE_SHARE:.0%}, service served {SERVICE_SHARE:.0%} of tenants; "
        f"a worker per {LIVE_PER_WORKER} live notebooks)"
    )
    print(
        f"  {'tenants':>7} {'workers':>7} {'held now':>9} {'peak now':>9} {'peak cut':>9} {'GB now (private/PSS)':>21}"
    )
    for tenants in (100, 1000):
        workers = max(1, -(-int(tenants * LIVE_SHARE) // LIVE_PER_WORKER))
        fixed = unit["hub"] + unit["service_owner"] + workers * unit["worker_held"]
        labs = tenants * LAB_SHARE
        held = (
            fixed
            + tenants * SERVICE_SHARE * unit["service_per_tenant"]
            + labs * (unit["lab_server"] + KERNELS_PER_LAB * unit["kernel"])
            + tenants * DASHBOARD_SHARE * (unit["dashboard_server"] + unit["dashboard_per_view"])
        )
        peak = held + workers * (WORKER_BOUND - unit["worker_held"])
        cut = (
            fixed + workers * (WORKER_BOUND - unit["worker_held"]) + (labs + tenants * DASHBOARD_SHARE) * IN_QUERY_SHARE
        )
        print(
            f"  {tenants:>7} {workers:>7} {held:>9.0f} {peak:>9.0f} {cut:>9.0f} "
            f"{peak * private_mb / 1024:>10.1f} / {peak * pss_mb / 1024:<9.1f}"
        )


if __name__ == "__main__":
    main()
