"""Shared fixtures and the test tiers. Database tests run against real PostgreSQL servers only.

Tiers (markers, set here at collection): ``unit`` tests use no service and open no
connection (checked: a connection from a unit test fails it); ``integration`` tests use
PostgreSQL, papermill, loopback venues or other local servers (a test that needs one without
a database fixture says ``@pytest.mark.integration``), and so do the ``slow`` ones (whole
reference libraries side by side, command-line runs); ``e2e`` tests run a JupyterHub, its
servers or chromium. ``python3 dev.py test -m unit`` runs one tier. Under pytest-xdist
(``--dist loadgroup``) the modules of one group stay on one worker, one after another: the
hubs with their browsers and culler (``hub``), the workers' runs as tenants' unix accounts and
the simulated hosts (``hosts``), and the notebooks, whose nbval runs one module fixture starts
together (``notebooks``). Each test makes its own tenants (random names) and hubs (their own
ports and data), so the groups run side by side.

``pg_server`` is the embedded server (started once per test session in a temporary folder),
the one a user's machine runs. ``--pg embedded,external`` (or ``WORKBENCH_TEST_PG``) adds the
machine's own server on 127.0.0.1:5432 (user ``postgres``, trust auth), as a deployment with
a managed PostgreSQL has it: every database test then runs once per server. ``database``
gives each test session a fresh database with a random name on that server, migrated to
head and set as the store's owner URL; it is dropped at the end together with the tenant
roles created in it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from workbench import store
from workbench.store._engine import OWNER_URL_ENV
from workbench.store._server import EmbeddedServer

_EXTERNAL = ("127.0.0.1", 5432)
_BACKENDS = ("embedded", "external")

TIERS = {
    "unit": "no service, no connection (a connection fails the test)",
    "integration": "PostgreSQL, papermill, loopback venues or other local servers; slow ones",
    "e2e": "a JupyterHub with its servers, or chromium",
}
_SERVICE_FIXTURES = {"pg_server", "embedded_server", "server_folder"}
_E2E_MODULES = {"test_browser", "test_culling", "test_hub", "test_dashboard", "test_login", "test_multihost"}
# modules that one worker runs in turn: their module fixtures (a hub, the notebooks' runs)
# serve all of their tests, and each of these groups mostly waits on processes of its own
_GROUPS = {
    **dict.fromkeys(("test_browser", "test_culling", "test_hub", "test_dashboard", "test_login"), "hub"),
    **dict.fromkeys(("test_scheduler", "test_root_paths", "test_multihost"), "hosts"),
    "test_notebooks": "notebooks",
}


def pytest_configure(config: pytest.Config) -> None:
    for tier, meaning in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: test tier: {meaning}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its tier, and the account-making ones their xdist group."""
    for item in items:
        module = item.path.stem
        if module in _E2E_MODULES or item.get_closest_marker("e2e"):
            tier = "e2e"
        elif (
            item.get_closest_marker("integration")
            or item.get_closest_marker("slow")
            or _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            tier = "integration"
        else:
            tier = "unit"
        item.add_marker(tier)
        if module in _GROUPS:
            item.add_marker(pytest.mark.xdist_group(_GROUPS[module]))


@pytest.fixture(autouse=True)
def _unit_tests_connect_nowhere(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that opens a connection (TCP or unix socket) from its own thread fails:
    it belongs in the integration tier. Threads a test did not start are left alone."""
    if request.node.get_closest_marker("unit") is None:
        return
    test_thread = threading.current_thread()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(real):
        def connect(self, address):
            if threading.current_thread() is test_thread:
                raise AssertionError(f"a unit test connected to {address!r}: mark it integration")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", refuse(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse(real_connect_ex))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg",
        default=os.environ.get("WORKBENCH_TEST_PG", "embedded"),
        help="PostgreSQL servers the database tests run on, comma-separated: embedded "
        "(default), external (127.0.0.1:5432)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``pg_server`` over the servers ``--pg`` names."""
    if "pg_server" in metafunc.fixturenames:
        chosen = [name.strip() for name in metafunc.config.getoption("pg").split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(_BACKENDS))
        if unknown or not chosen:
            raise pytest.UsageError(f"--pg takes {', '.join(_BACKENDS)}; got {metafunc.config.getoption('pg')!r}")
        metafunc.parametrize("pg_server", chosen, indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def workbench_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """No test touches ~/.workbench; the database role secret stays fixed for the session
    even when a test points WORKBENCH_HOME elsewhere."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_HOME", str(home))
        patch.setenv("WORKBENCH_DB_ROLE_SECRET", secrets.token_hex(32))
        for variable in (*OWNER_URL_ENV, store.TENANT_URL_ENV, "WORKBENCH_ROLE_PREFIX"):
            patch.delenv(variable, raising=False)
        yield home


@dataclass
class PgServer:
    """A PostgreSQL server the tests may create databases on, as a role that can do so."""

    backend: str  # "embedded" or "external"
    admin_url: str  # SQLAlchemy URL of the maintenance database "postgres"
    embedded: EmbeddedServer | None = None

    def libpq_url(self, url: str | None = None) -> str:
        """``url`` (default: admin) for a raw psycopg connection."""
        return make_url(url or self.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self) -> str:
        name = f"wbtest_{secrets.token_hex(4)}"
        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` and the tenant roles named after it."""
        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            roles = conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", [name + "_"]).fetchall()
            for (role,) in roles:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@contextmanager
def _server_folder() -> Iterator[Path]:
    """A folder for an embedded server outside pytest's temporary tree: as root the server runs
    as another user, and every pytest run resets that tree's top folder to mode 0700."""
    folder = Path(tempfile.mkdtemp(prefix="workbench-test-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server_folder() -> Iterator[Path]:
    """An empty folder of one test for an embedded server of its own."""
    with _server_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def embedded_server(workbench_home) -> Iterator[EmbeddedServer]:
    """One embedded server for the whole test session, stopped at the end."""
    with _server_folder() as folder:
        server = EmbeddedServer(folder / "postgres")
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> PgServer:
    if request.param == "embedded":
        server = request.getfixturevalue("embedded_server")
        return PgServer("embedded", server.url(database="postgres"), server)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(_EXTERNAL) != 0:
            pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432")
    return PgServer("external", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class Database:
    server: PgServer
    name: str
    url: str  # the owner's SQLAlchemy URL


@pytest.fixture(scope="session")
def database(pg_server: PgServer) -> Iterator[Database]:
    """A fresh database at schema head, used by the store API for the whole session."""
    name = pg_server.create_database()
    url = pg_server.url(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_DATABASE_URL", url)
        store.dispose()
        store.upgrade()
        yield Database(pg_server, name, url)
        store.dispose()
    pg_server.drop_database(name)


@pytest.fixture
def empty_database(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A fresh, empty database of one test, set as the store's owner URL."""
    name = pg_server.create_database()
    url = pg_server.url(name)
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    yield Database(pg_server, name, url)
    store.dispose()
    pg_server.drop_database(name)
