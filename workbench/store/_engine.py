"""Where the database is and how to connect to it: URLs, cached engines and sessions.

The owner URL comes from ``WORKBENCH_DATABASE_URL`` or ``DATABASE_URL``; with neither set, the
embedded server in ``home()/postgres`` is started (or found running) and its owner role used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from workbench._home import home
from workbench.errors import DatabaseError
from workbench.store._idle import close_when_idle, idle_close_after
from workbench.store._server import EmbeddedServer

OWNER_URL_ENV = ("WORKBENCH_DATABASE_URL", "DATABASE_URL")
TENANT_URL_ENV = "WORKBENCH_TENANT_DATABASE_URL"
_DRIVER = "postgresql+psycopg"

_engines: dict[str, Engine] = {}


def normalize_url(url: str) -> str:
    """``url`` with the psycopg 3 driver (``postgres://`` and ``postgresql://`` are accepted);
    any other database is refused, because isolation relies on PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            "database URL is malformed; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseError(
            f"database URL uses {parsed.get_backend_name()!r}; the workbench needs PostgreSQL (postgresql://...)"
        )
    return parsed.set(drivername=_DRIVER).render_as_string(hide_password=False)


def embedded_server() -> EmbeddedServer:
    """The embedded server of this workbench home (not necessarily running)."""
    return EmbeddedServer(home() / "postgres")


def database_url() -> str:
    """The owner's SQLAlchemy URL; starts the embedded server when no URL is configured."""
    for variable in OWNER_URL_ENV:
        if os.environ.get(variable):
            return normalize_url(os.environ[variable])
    return _embedded_url(embedded_server().root)


@lru_cache
def _embedded_url(root: Path) -> str:
    server = EmbeddedServer(root)
    server.start()
    return server.url()


def external_database() -> bool:
    """Whether the owner URL names a server (else the embedded one in this machine's home)."""
    return any(os.environ.get(name) for name in OWNER_URL_ENV)


def engine_for(url: str, *, tenant: bool = False) -> Engine:
    """One cached engine per URL; pre-ping so a restarted server costs no failed query. A
    ``tenant`` role's engine keeps at most one idle connection and closes it once unused for
    ``WORKBENCH_DB_IDLE_CLOSE`` seconds (``_idle``): the server's connections then follow the
    tenants at work, not every tenant a process ever served."""
    if url not in _engines:
        if tenant:
            engine = create_engine(normalize_url(url), pool_pre_ping=True, pool_size=1, max_overflow=4)
            _engines[url] = close_when_idle(engine, idle_close_after())
        else:
            _engines[url] = create_engine(normalize_url(url), pool_pre_ping=True)
    return _engines[url]


def owner_engine() -> Engine:
    """The trusted side's engine: the owner role sees every tenant's rows."""
    return engine_for(database_url())


@contextmanager
def session_scope(engine: Engine | Connection) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error. Objects stay
    readable after the block (no expiry on commit)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def owner_session() -> Iterator[Session]:
    """A session as the owner role (trusted code only: it bypasses row-level security)."""
    with session_scope(owner_engine()) as session:
        yield session


def dispose() -> None:
    """Close every pooled connection and forget cached URLs (after a fork, or when the
    configuration changes, e.g. between test databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _embedded_url.cache_clear()
