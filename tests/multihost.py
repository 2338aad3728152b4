"""Hosts simulated with Linux network namespaces: the workbench beyond one machine.

``hosts()`` builds, for one test module, four machines on a private subnet 10.X.Y.0/24
(chosen not to overlap any route of this machine):

* ``db`` (.2): PostgreSQL, a fresh cluster listening on the host's address only, password
  authentication (scram-sha-256) for the subnet only;
* ``hub`` (.3): ``workbench hub --no-worker``: JupyterHub, its proxy and the workbench service,
  the hub's public port on the host's address;
* ``w1`` (.4), ``w2`` (.5): ``workbench worker``.

Each host is a network namespace (``wbmh-<tag>-<host>``) whose one interface is a veth pair
plugged into a bridge in a ``switch`` namespace; this process is the client (.1, a veth of the
root namespace on the same bridge), so it reaches the hub's public port as a browser would.
Cutting a host's cable (``Hosts.cut``) sets the switch's end of its veth down.

Every process of a host starts as ``ip netns exec <ns> unshare --mount --uts`` with a private
``/tmp`` (a tmpfs), the host's own name (``hostname``), and the hosts' folder
(``/var/tmp/wbmh-<tag>``) replaced by a tmpfs holding only that host's own folder, so no host
sees another's files: its ``WORKBENCH_HOME`` is its own, and what a host needs of another
comes through the network or is handed to it explicitly (the owner's database URL, the
role secret and the master key, as an operator sets them: ``docs/SETTINGS.md``). The Python
environment (``.venv``, the package, its notebooks) is the machines' shared image.

Unix accounts live in ``/etc/passwd``, which all namespaces share here: the hub's provisioning
creates ``jupyter-<name>`` once and the workers find it. On real machines the operator
provisions the tenants' accounts on every worker (``hub_config/README.md``, "Hosts").

Everything is torn down at the end, failure or not: processes killed, namespaces (and with
them their veths) deleted, the folder and the unix accounts removed. Needs root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.hub_harness import Client, _delete_accounts, _notebooks
from workbench.store._rls import close_public_access
from workbench.store._server import POSTGRES_BIN_PATH

VENV_BIN = Path(sys.executable).parent
POSTGRES_USER = "workbench-postgres"  # the unprivileged account the product's embedded server uses
OWNER, DATABASE = "workbench", "workbench"
KEEP_LOGS = "WBMH_KEEP_LOGS"  # a folder: the hosts' logs are copied there at teardown
_ADDRESSES = {"client": 1, "db": 2, "hub": 3, "w1": 4, "w2": 5}


class Unavailable(Exception):
    """Namespaces cannot be made here (not root, no ``ip netns``): the reason."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.X.Y.0/24 that overlaps no route or address of this machine."""
    taken = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines() + _ip("-4", "-o", "addr").stdout.split(
        "\n"
    ):
        for word in line.split():
            with contextlib.suppress(ValueError):
                if "/" in word or word.count(".") == 3:
                    taken.append(ipaddress.ip_network(word, strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}.0/24")
        if not any(net.overlaps(other) for other in taken if other.prefixlen > 0):
            return net
    raise Unavailable("no free 10.X.Y.0/24 subnet")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    folder: Path  # the host's own folder; the only one of the hosts' folders it sees
    cable: str  # the switch's end of the host's veth
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.folder / "home"

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"


@dataclass
class Hosts:
    tag: str
    subnet: ipaddress.IPv4Network
    root: Path  # /var/tmp/wbmh-<tag>: one folder per host
    switch: str
    hosts: dict[str, Host] = field(default_factory=dict)
    client_link: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # what the operator hands the trusted hosts
    accounts: list[str] = field(default_factory=list)  # tenants whose unix accounts go at the end
    passwords: dict[str, str] = field(default_factory=dict)  # the hub's first-run accounts
    clients: dict[str, Client] = field(default_factory=dict)  # browsers logged in, by user name

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def address(self, host: str) -> str:
        return str(self.subnet.network_address + _ADDRESSES[host])

    # --- the network -------------------------------------------------------------------------

    def plug(self, name: str) -> Host:
        """A new host: its namespace, its cable to the switch, its address, its folder."""
        netns, cable, inside = f"wbmh-{self.tag}-{name}", f"mh{self.tag}-{name}", f"mh{self.tag}-{name}p"
        _ip("netns", "add", netns)
        host = Host(name, netns, self.address(name), self.root / name, cable)
        self.hosts[name] = host
        _ip("link", "add", cable, "netns", self.switch, "type", "veth", "peer", "name", inside, "netns", netns)
        _ip("-n", self.switch, "link", "set", cable, "master", "br0", "up")
        _ip("-n", netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        host.folder.mkdir(mode=0o755)
        host.folder.chmod(0o755)  # tenants' accounts pass through to the hub's notebooks
        return host

    def cut(self, name: str) -> None:
        """Unplug host ``name``: its packets go nowhere (no reset: connections hang, as on a real cut)."""
        _ip("-n", self.switch, "link", "set", self[name].cable, "down")

    def restore(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self[name].cable, "up")

    # --- processes ---------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], log: str, user: str | None = None
    ) -> subprocess.Popen:
        """``argv`` on host ``name``: its namespace, a private /tmp, its own name and folder only."""
        host = self[name]
        script = " && ".join(
            [
                f"hostname {shlex.quote(host.netns)}",
                "mount -t tmpfs -o mode=1777 tmpfs /tmp",
                "mkdir /tmp/.own",
                f"mount --bind {shlex.quote(str(host.folder))} /tmp/.own",
                f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(self.root))}",
                f"mkdir {shlex.quote(str(host.folder))}",
                f"mount --move /tmp/.own {shlex.quote(str(host.folder))}",
                "rmdir /tmp/.own",
                'exec "$@"',
            ]
        )
        if user is not None:  # setpriv execs: the process we hold is the program itself
            ids = subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout.strip()
            gid = subprocess.run(["id", "-g", user], capture_output=True, text=True, check=True).stdout.strip()
            argv = ["setpriv", f"--reuid={ids}", f"--regid={gid}", "--clear-groups", *argv]
        with open(host.log(log), "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation", "private"]
                + ["sh", "-c", script, "sh", *argv],
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        host.processes.append(process)
        return process

    def run(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> tuple[int, str]:
        """``argv`` on host ``name`` to its end: its exit status and output."""
        log = f"run-{secrets.token_hex(3)}"
        process = self.spawn(name, argv, env or {"PATH": "/usr/bin:/bin"}, log)
        try:
            code = process.wait(timeout)
        finally:
            self.stop(process)
        return code, self[name].log(log).read_text(errors="replace")

    def environment(self, name: str, **extra: str) -> dict[str, str]:
        """A trusted host's environment: its own home, the database and the secrets it is handed."""
        host = self[name]
        return {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(host.folder),
            "WORKBENCH_HOME": str(host.home),
            **self.secrets,
            **extra,
        }

    def stop(self, process: subprocess.Popen, timeout: float = 20.0) -> None:
        """SIGTERM to the process's group, then SIGKILL to whatever of it is left."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    # --- the pieces --------------------------------------------------------------------------

    @property
    def owner_url(self) -> str:
        return f"postgresql://{OWNER}:{self.secrets['_OWNER_PASSWORD']}@{self.address('db')}:5432/{DATABASE}"

    def start_database(self) -> None:
        """initdb a fresh cluster in the db host's folder and serve it on the db host's address."""
        host = self["db"]
        data, superuser = host.folder / "data", secrets.token_hex(16)
        pwfile = host.folder / "superuser.pw"
        pwfile.write_text(superuser + "\n")
        shutil.chown(host.folder, POSTGRES_USER, POSTGRES_USER)
        shutil.chown(pwfile, POSTGRES_USER, POSTGRES_USER)
        pwfile.chmod(0o600)
        subprocess.run(
            ["setpriv", *self._postgres_ids(), str(POSTGRES_BIN_PATH / "initdb"), "-D", str(data), "-U", "postgres"]
            + [f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"],
            check=True,
            capture_output=True,
            cwd="/",
        )
        pwfile.unlink()
        # pg_hba.conf (https://www.postgresql.org/docs/current/auth-pg-hba-conf.html): the first
        # matching record decides; TCP from the simulated subnet with a SCRAM-SHA-256 password,
        # nothing else (no local socket, no other network)
        (data / "pg_hba.conf").write_text(f"host all all {self.subnet} scram-sha-256\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{host.address}'\nport = 5432\nunix_socket_directories = ''\n"
                "password_encryption = 'scram-sha-256'\n"
                # a client cut off is noticed by the server within seconds, not TCP's 2 hours
                "tcp_keepalives_idle = 5\ntcp_keepalives_interval = 2\ntcp_keepalives_count = 3\n"
            )
        self.spawn(
            "db",
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(data)],
            {"PATH": "/usr/bin:/bin"},
            "postgres",
            user=POSTGRES_USER,
        )
        admin = dict(host=host.address, user="postgres", password=superuser, connect_timeout=3)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(dbname="postgres", autocommit=True, **admin)  # type: ignore[arg-type]
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # what a managed server's administrator gives the workbench: an owner role that creates
        # tenant roles and bypasses row-level security (hub_config/README.md, "PostgreSQL")
        owner_password = secrets.token_hex(24)
        with conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE BYPASSRLS PASSWORD {}").format(
                    sql.Identifier(OWNER), sql.Literal(owner_password)
                )
            )
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(OWNER)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(OWNER)))
        for database in ("template1", DATABASE):
            with psycopg.connect(dbname=database, **admin) as conn:  # type: ignore[arg-type]
                close_public_access(conn, keep=OWNER)
        self.secrets["_OWNER_PASSWORD"] = owner_password

    def _postgres_ids(self) -> list[str]:
        uid = subprocess.run(["id", "-u", POSTGRES_USER], capture_output=True, text=True, check=True).stdout.strip()
        gid = subprocess.run(["id", "-g", POSTGRES_USER], capture_output=True, text=True, check=True).stdout.strip()
        return [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]

    def trusted_secrets(self) -> None:
        """What the operator hands the hub and the workers (``docs/SETTINGS.md``): the owner's
        URL, the role secret the tenants' passwords derive from, the master keyring."""
        import base64

        self.secrets.update(
            {
                "WORKBENCH_DATABASE_URL": self.owner_url,
                "WORKBENCH_DB_ROLE_SECRET": secrets.token_hex(32),
                "WORKBENCH_MASTER_KEY": "1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
            }
        )

    def start_hub(self, admin: str, tenant: str, timeout: float = 120.0) -> dict[str, str]:
        """``workbench hub --no-worker`` on the hub host; the first run's passwords."""
        host = self["hub"]
        notebooks = _notebooks(host.folder)
        self.accounts += [admin, tenant]
        env = self.environment(
            "hub",
            WORKBENCH_HUB_IP=host.address,
            WORKBENCH_HUB_PORT="8000",
            WORKBENCH_HUB_ADMINS=admin,
            WORKBENCH_HUB_DEMO_TENANTS=tenant,
            WORKBENCH_NOTEBOOKS=str(notebooks),
        )
        env = {k: v for k, v in env.items() if not k.startswith("_")}
        process = self.spawn("hub", [str(VENV_BIN / "workbench"), "hub", "--no-worker"], env, "hub")
        credentials = host.home / "hub" / "credentials"
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the hub exited ({process.returncode}):\n{host.log('hub').read_text()[-3000:]}")
            if "JupyterHub is running at" in host.log("hub").read_text(errors="replace") and credentials.exists():
                return json.loads(credentials.read_text())
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start in {timeout} s:\n{host.log('hub').read_text()[-3000:]}")
            time.sleep(0.3)

    def start_worker(self, name: str, *options: str) -> subprocess.Popen:
        env = {k: v for k, v in self.environment(name).items() if not k.startswith("_")}
        return self.spawn(name, [str(VENV_BIN / "workbench"), "worker", "--verbose", *options], env, "worker")

    @property
    def hub_url(self) -> str:
        return f"http://{self.address('hub')}:8000"

    # --- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                self.restore(host.name)
        # the hub and the workers stop together (each waits for its runs and servers), the
        # database after them
        last = [p for host in self.hosts.values() if host.name == "db" for p in host.processes]
        first = [p for host in self.hosts.values() if host.name != "db" for p in host.processes]
        for group in (first, last):
            for process in group:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
            for process in group:
                self.stop(process)
        _delete_accounts(self.accounts)
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        _ip("netns", "del", self.switch, check=False)
        if self.client_link:
            _ip("link", "del", self.client_link, check=False)
        if os.environ.get(KEEP_LOGS):  # the hosts' logs, for reading after a failure
            for log in self.root.glob("*/*.log"):
                Path(os.environ[KEEP_LOGS], log.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(log, Path(os.environ[KEEP_LOGS], log.parent.name, log.name))
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    """The switch, the client's cable and four empty hosts (db, hub, w1, w2); all torn down after."""
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        raise Unavailable("the ip and unshare commands are missing")
    tag = secrets.token_hex(3)
    switch = f"wbmh-{tag}-switch"
    probe = subprocess.run(["ip", "netns", "add", switch], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise Unavailable(f"`ip netns add` failed: {probe.stderr.strip()}")
    root = Path(f"/var/tmp/wbmh-{tag}")
    net = Hosts(tag, _free_subnet(), root, switch)
    try:
        root.mkdir(mode=0o755)
        root.chmod(0o755)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        net.client_link = f"mh{tag}-c"
        _ip("link", "add", net.client_link, "type", "veth", "peer", "name", f"mh{tag}-cs", "netns", switch)
        _ip("-n", switch, "link", "set", f"mh{tag}-cs", "master", "br0", "up")
        _ip("addr", "add", f"{net.address('client')}/{net.subnet.prefixlen}", "dev", net.client_link)
        _ip("link", "set", net.client_link, "up")
        for name in ("db", "hub", "w1", "w2"):
            net.plug(name)
        yield net
    finally:
        net.close()
