"""Beyond one machine the workbench needs only the database between hosts.

Four simulated machines (``tests/multihost.py``: network namespaces on one bridge, each with
its own /tmp and folder): PostgreSQL on ``db``, the hub with its proxy and the workbench
service on ``hub``, a ``workbench worker`` on ``w1`` and on ``w2``; this process is the
tenant's browser. A tenant logs in, promotes a live paper notebook on a seconds schedule from
its JupyterLab terminal, and then:

* the runs execute on both worker hosts, each exactly once, outputs stored on the worker
  that ran them;
* a worker host unplugged in the middle of a run: the run is recorded abandoned once the
  worker's heartbeat is missing for ``--stalled-after``, and the next due run executes on
  the other worker;
* the database host unplugged for a few seconds and plugged back: the hub (provisioning a
  new tenant), the service (the tenant's API) and the remaining worker (the next runs) go on
  without being restarted;
* the unplugged worker plugged back in records nothing over its abandoned run, starts none
  of the jobs it fetched while presumed dead (``scheduler._execute.Fence``) and beats again
  without a restart; no run executes twice, no scheduled time has two runs.

Before that: each host sees only its own folder and /tmp, and a worker handed the database
but not the hub's role secret refuses to start. Skipped, with the reason, where network
namespaces cannot be made (not root, no ``ip netns``).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import nbformat
import psycopg
import pytest
import requests

from tests.hub_harness import REPO, Client, in_terminal
from tests.multihost import VENV_BIN, Hosts, Unavailable, hosts

HEARTBEAT, STALLED_AFTER = 0.5, 6.0  # seconds: `workbench worker --heartbeat/--stalled-after`
DB_OUTAGE = 3.0  # seconds the database host is unplugged: well below STALLED_AFTER, see below
SCHEDULE = "* * * * * */3"  # cron with seconds: a tick every 3 s
HOLD = 1.5  # seconds a run holds on after its tick (~2.5 s in all, within the schedule): time to cut its worker
_STARTED = re.compile(r"run #(\d+) of session #(\d+) \(\w+\) started by ([\w-]+):\d+/job")
_WORKERS = ("w1", "w2")


@pytest.fixture(scope="module")
def net():
    try:
        with hosts() as made:
            made.start_database()
            made.trusted_secrets()
            tenant = f"mh{made.tag}"
            made.passwords = made.start_hub(f"adm{made.tag}", tenant)
            # the tenant, from the client host: logs in, which starts its server on the hub host
            # (it gets ready while the workers start)
            made.clients[tenant] = _login(made, tenant)
            for worker in _WORKERS:
                made.start_worker(worker, "--heartbeat", str(HEARTBEAT), "--stalled-after", str(STALLED_AFTER))
            yield made
    except Unavailable as exc:
        pytest.skip(f"simulated hosts unavailable: {exc}")


# --- what the observer reads -----------------------------------------------------------------


def _runs(net: Hosts, session_id: int) -> list[dict]:
    """The session's runs (owner role, from the client host: the observer's view)."""
    with psycopg.connect(net.owner_url, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT r.id, r.scheduled_for, r.status, r.error, r.output_path, l.version FROM notebook_runs r "
            "JOIN live_notebooks l ON l.id = r.live_notebook_id WHERE l.session_id = %s ORDER BY r.id",
            [session_id],
        ).fetchall()
    return [dict(zip(("id", "scheduled_for", "status", "error", "output_path", "version"), row)) for row in rows]


def _started(net: Hosts) -> dict[int, list[str]]:
    """Run id -> the worker hosts whose log says they started it."""
    found: dict[int, list[str]] = {}
    for worker in _WORKERS:
        log = net[worker].log("worker")
        for run_id, _, host in _STARTED.findall(log.read_text(errors="replace") if log.exists() else ""):
            assert host == net[worker].netns, f"{worker}'s log names host {host}"
            found.setdefault(int(run_id), []).append(worker)
    return found


def _beating(net: Hosts) -> int:
    """The workers whose procrastinate heartbeat is fresh."""
    with psycopg.connect(net.owner_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate.procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => %s)",
            [HEARTBEAT * 4],
        ).fetchone()
    return row[0] if row else 0


def _wait(predicate, timeout: float, what: str, net: Hosts | None = None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except psycopg.OperationalError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            logs = ""
            if net is not None:
                logs = "\n".join(
                    f"--- {h.name}/{p.name}\n{p.read_text(errors='replace')[-2500:]}"
                    for h in net.hosts.values()
                    for p in h.folder.glob("*.log")
                    if h.name != "db"
                )
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(0.2)


def _login(net: Hosts, name: str) -> Client:
    client = Client(net.hub_url)
    client.login(name, net.passwords[name])
    return client


# --- the tests -------------------------------------------------------------------------------


def test_each_host_sees_its_own_files_and_a_worker_needs_the_hubs_role_secret(net: Hosts):
    marker = Path(tempfile.mkdtemp(prefix=f"wbmh-{net.tag}-"))  # in this machine's /tmp
    try:
        for name in net.hosts:
            code, listed = net.run(name, ["ls", "-A", str(net.root), "/tmp"])
            assert code == 0 and sorted(listed.split()) == sorted([f"{net.root}:", name, "/tmp:"]), listed
    finally:
        marker.rmdir()
    # a worker handed the database but not the hub's role secret refuses to start, saying why
    env = {k: v for k, v in net.environment("w2").items() if not k.startswith("_") and k != "WORKBENCH_DB_ROLE_SECRET"}
    code, printed = net.run("w2", [str(VENV_BIN / "workbench"), "worker"], env)
    assert code == 2 and "WORKBENCH_DB_ROLE_SECRET" in printed and "Traceback" not in printed, printed
    assert not (net["w2"].home / "db-role.key").exists()
    # the hub says where its workers are
    assert "worker: not started (--no-worker)" in net["hub"].log("hub").read_text()


def test_hosts_share_only_the_database(net: Hosts):
    tenant, admin = f"mh{net.tag}", f"adm{net.tag}"
    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began - sum(phases.values()), 1)

    # the tenant, from the client host (logged in by the fixture): the session the first run
    # made, its server
    client = net.clients[tenant]
    sessions = client.service("GET", "sessions")
    assert sessions.status_code == 200, sessions.text
    session_id = sessions.json()[0]["id"]
    client.start_server(tenant)
    # a paper notebook that holds on after its tick, saved in the tenant's JupyterLab (contents
    # API) and promoted from its terminal on a seconds schedule: the server, on the hub host,
    # reaches PostgreSQL as the tenant
    notebook = nbformat.read(REPO / "notebooks" / "live" / "paper_channel.ipynb", as_version=4)
    hold = nbformat.v4.new_code_cell(f"import time\ntime.sleep({HOLD})")
    hold.metadata["tags"] = ["hold"]
    notebook.cells.append(hold)
    saved = requests.put(
        f"{net.hub_url}/user/{tenant}/api/contents/live/paper_hold.ipynb",
        headers={"Authorization": f"token {client.token(tenant)}"},
        json={"type": "notebook", "format": "json", "content": notebook},
        timeout=30,
    )
    assert saved.status_code in (200, 201), saved.text
    status, printed = in_terminal(
        SimpleNamespace(url=net.hub_url),
        client,
        tenant,
        f"{VENV_BIN}/workbench live promote live/paper_hold.ipynb {session_id} '{SCHEDULE}'",
    )
    assert status == 0 and "is live on" in printed, printed
    with psycopg.connect(net.owner_url, connect_timeout=3) as conn:
        (version,) = conn.execute(
            "SELECT version FROM live_notebooks WHERE session_id = %s AND status = 'active'", [session_id]
        ).fetchone()

    def held(run: dict) -> bool:  # a run of the promoted (holding) notebook
        return run["version"] == version

    phase("login, server, promotion")

    # both worker hosts execute runs; each run once
    def both_ran():
        done = {r["id"] for r in _runs(net, session_id) if held(r) and r["status"] == "succeeded"}
        by = _started(net)
        return {w for run_id in done for w in by.get(run_id, [])} >= set(_WORKERS)

    _wait(both_ran, 90, "succeeded runs on both worker hosts", net)
    phase("runs on both workers")

    # a worker host unplugged while a run executes there
    def running_somewhere():
        by = _started(net)
        for run in _runs(net, session_id):
            if held(run) and run["status"] == "running" and len(by.get(run["id"], [])) == 1:
                return run, by[run["id"]][0]
        return None

    victim_run, victim = _wait(running_somewhere, 30, "a run in progress", net)
    net.cut(victim)
    survivor = next(w for w in _WORKERS if w != victim)
    cut_at = time.monotonic()

    def abandoned():
        run = next(r for r in _runs(net, session_id) if r["id"] == victim_run["id"])
        return run if run["status"] == "failed" else None

    lost = _wait(abandoned, STALLED_AFTER + 20, f"run #{victim_run['id']} on unplugged {victim} to be abandoned", net)
    assert lost["error"].startswith("abandoned: the worker running it stopped"), lost["error"]
    assert time.monotonic() - cut_at >= STALLED_AFTER - 1  # not before its heartbeat was missed

    def next_on_survivor():
        by = _started(net)
        return [
            r
            for r in _runs(net, session_id)
            if r["scheduled_for"] > lost["scheduled_for"]
            and r["status"] == "succeeded"
            and by.get(r["id"]) == [survivor]
        ]

    _wait(next_on_survivor, 30, f"the next run on {survivor}", net)
    phase("worker cut: abandoned, taken over")

    # the database host unplugged for a few seconds, then back. Well below STALLED_AFTER: TCP
    # retransmits with a doubling timeout (0.2, 0.4, 0.8, 1.6, 3.2 s...), so a connection
    # resumes up to about as long again after the cable is back, and a heartbeat older than
    # STALLED_AFTER makes a live worker's run in progress look abandoned
    approval = Client(net.hub_url)  # the admin, logged in before (JupyterHub's own sqlite)
    approval.form("/hub/login?next=%2Fhub%2Fauthorize", {"username": admin, "password": net.passwords[admin]})
    net.cut("db")
    time.sleep(DB_OUTAGE)
    net.restore("db")
    restored = time.monotonic()
    before = max(r["id"] for r in _runs(net, session_id))

    def service_answers():
        return client.service("GET", "sessions", timeout=5).status_code == 200

    _wait(service_answers, 30, "the workbench service after the database came back", net)
    # the hub provisions a new tenant (a database role) through its own connection
    newcomer = f"mhn{net.tag}"
    net.accounts.append(newcomer)
    Client(net.hub_url).signup(newcomer)
    assert approval.get(approval.url(f"/hub/authorize/{newcomer}"), timeout=60).status_code == 200
    with psycopg.connect(net.owner_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1 FROM tenants WHERE name = %s", [newcomer]).fetchone(), "hub did not provision"
    _wait(
        lambda: len([r for r in _runs(net, session_id) if r["id"] > before and r["status"] == "succeeded"]) >= 2,
        30,
        "two runs after the database came back",
        net,
    )
    recovered = time.monotonic() - restored
    phase("database cut: everyone recovered")

    # the unplugged worker comes back: it records nothing over the abandoned run, runs nothing
    # twice, and is back in the job queue without a restart (a new heartbeat)
    net.restore(victim)
    _wait(lambda: _beating(net) == 2, 45, "both workers beating", net)
    phase("worker back")
    runs = _runs(net, session_id)
    by = _started(net)
    assert next(r for r in runs if r["id"] == lost["id"])["status"] == "failed"
    # no other run was abandoned: not by the database's outage (heartbeats resumed in time),
    # not by the worker coming back (its first job after the cut is not started: Fence)
    failed = [r for r in runs if held(r) and r["status"] == "failed" and r["id"] != lost["id"]]
    assert all("not started" in r["error"] for r in failed), failed
    twice = {run_id: hosts_ for run_id, hosts_ in by.items() if len(hosts_) > 1}
    assert not twice, f"runs started twice: {twice}"
    slots = Counter(r["scheduled_for"] for r in runs)
    assert max(slots.values()) == 1, "a scheduled time ran twice"
    # every finished run of the promoted notebook has its output on the worker host that ran it
    outputs = [r for r in runs if held(r) and r["status"] == "succeeded"]
    assert outputs
    for run in outputs:
        host = net[by[run["id"]][0]]
        assert run["output_path"].startswith(str(host.home) + "/"), run
        assert (host.folder / run["output_path"][len(str(host.folder)) + 1 :]).is_file()
    for worker in _WORKERS:
        assert net[worker].processes[0].poll() is None, f"worker {worker} exited"
    assert net["hub"].processes[0].poll() is None, "the hub exited"
    print(
        f"\nruns: {len(runs)} ({Counter(w for r in runs for w in by.get(r['id'], []))}), "
        f"recovered {recovered:.1f} s after the database came back; seconds per phase: {phases}"
    )
