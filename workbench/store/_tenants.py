"""Tenants: their PostgreSQL roles, their connection URLs, and the session notebook code uses.

Each tenant is a LOGIN role of its own, with no attributes (NOSUPERUSER, NOCREATEDB,
NOCREATEROLE, NOBYPASSRLS, NOINHERIT) and membership in nothing, so it can neither bypass
row-level security nor ``SET ROLE`` to anyone else. Role names are cluster-wide, while a
workbench database is one of many on a server (parallel test runs, other deployments), so a
role is named ``<prefix><tenant>`` with the prefix ``<database>_`` (or ``WORKBENCH_ROLE_PREFIX``).

PostgreSQL lets every role change its own password and its own session defaults
(``ALTER ROLE current_user PASSWORD ... / SET ...``), and no trigger can stop it (event
triggers do not fire for roles, which live outside any database). A changed password would
lock the trusted side out of the tenant's runs; changed defaults would follow the tenant's
runs around. So whenever the trusted side hands out a tenant's URL (:func:`tenant_url`: each
server start and each run), :func:`restore_role` checks that the derived password still logs
in and that the role has no defaults, puts both back when not, and logs what it undid.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import cast

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from sqlalchemy import Engine, func, make_url, select, text, update
from sqlalchemy.orm import Session

from workbench.errors import TenantError
from workbench.store._engine import (
    TENANT_URL_ENV,
    database_url,
    engine_for,
    normalize_url,
    owner_session,
    session_scope,
)
from workbench.store._migrate import current_revision, head_revision, upgrade
from workbench.store._rls import driver, grant_tenant, public_exposures, revoke_tenant
from workbench.store._secret import password_verifier, role_password
from workbench.store.models import Tenant, TradingSession

LOCAL_TENANT = "local"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_ROLE_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
_INVALID_PASSWORD = "28P01"  # SQLSTATE invalid_password
_log = logging.getLogger(__name__)


def validate_name(name: object) -> str:
    """``name`` if it is a valid tenant name, else TenantError saying what is wrong."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TenantError(
            f"tenant name {name!r} is invalid: use 1 to 32 lowercase letters, digits "
            f"and underscores, starting with a letter"
        )
    return name


def create_tenant(name: str) -> Tenant:
    """Register tenant ``name`` and create its login role with the tenant privileges."""
    validate_name(name)
    with owner_session() as session:
        existing = session.scalar(select(Tenant).where(Tenant.name == name))
        if existing is not None:
            state = f"was removed on {existing.removed_at:%Y-%m-%d}" if existing.removed_at else "exists"
            raise TenantError(f"tenant {name!r} already {state}; tenant names are never reused")
        conn = driver(session.connection())
        role = _role_prefix(conn) + name
        if len(role.encode()) > _MAX_ROLE_LENGTH:
            raise TenantError(
                f"role name {role!r} for tenant {name!r} is longer than "
                f"{_MAX_ROLE_LENGTH} bytes; use a shorter tenant name or WORKBENCH_ROLE_PREFIX"
            )
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            raise TenantError(
                f"database role {role!r} for tenant {name!r} already exists on this "
                f"server (another database's tenant?); set WORKBENCH_ROLE_PREFIX"
            )
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS PASSWORD {}"
            ).format(sql.Identifier(role), sql.Literal(password_verifier(conn, role)))
        )
        tenant = Tenant(name=name, role_name=role)
        session.add(tenant)
        session.flush()
        grant_tenant(conn, role)
        session.refresh(tenant)
    return tenant


def remove_tenant(name: str | Tenant) -> Tenant:
    """Retire tenant ``name``: its records stay, its running and paused sessions are stopped,
    its role loses LOGIN and every privilege, and its open connections are closed."""
    with owner_session() as session:
        tenant = _active_tenant(session, name)
        tenant.removed_at = func.now()
        session.execute(
            update(TradingSession)
            .where(TradingSession.tenant_id == tenant.id, TradingSession.status.in_(("running", "paused")))
            .values(status="stopped", status_message="stopped: tenant removed by the operator")
        )
        conn = driver(session.connection())
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(tenant.role_name)))
        revoke_tenant(conn, tenant.role_name)
        session.flush()
        session.refresh(tenant)
    with owner_session() as session:  # after the commit, so a reconnect finds NOLOGIN
        session.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"),
            {"role": tenant.role_name},
        )
    return tenant


def list_tenants(include_removed: bool = False) -> list[Tenant]:
    """Tenants by name; removed ones only when asked."""
    query = select(Tenant).order_by(Tenant.name)
    if not include_removed:
        query = query.where(Tenant.removed_at.is_(None))
    with owner_session() as session:
        return list(session.scalars(query))


def tenant_url(name: str | Tenant) -> str:
    """SQLAlchemy URL of tenant ``name``'s own role (same server and database as the owner),
    with the role put back as provisioned if the tenant changed it (:func:`restore_role`)."""
    with owner_session() as session:
        role = _active_tenant(session, name).role_name
    restore_role(role)
    return _role_url(role)


def restore_role(role: str) -> list[str]:
    """Undo what tenant role ``role`` may change about itself: its password (checked by
    logging in with the derived one) and its session defaults. What was undone, also logged."""
    changed = []
    try:
        psycopg.connect(
            make_url(_role_url(role)).set(drivername="postgresql").render_as_string(hide_password=False),
            connect_timeout=10,
        ).close()
    except psycopg.OperationalError as exc:
        if getattr(exc, "sqlstate", None) != _INVALID_PASSWORD and "password authentication failed" not in str(exc):
            raise
        changed.append("password")
    with owner_session() as session:
        conn = driver(session.connection())
        defaults = conn.execute(
            "SELECT d.datname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = %s",
            [role],
        ).fetchall()
        if not changed and not defaults:
            return changed
        # two processes may restore at once; ALTER ROLE on one row at a time
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('workbench role ' || %s))", [role])
        target = sql.Identifier(role)
        if changed:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(target, sql.Literal(password_verifier(conn, role)))
            )
        for database, settings in defaults:
            changed.append(f"defaults {', '.join(settings)}" + (f" in database {database}" if database else ""))
            where = sql.SQL(" IN DATABASE {}").format(sql.Identifier(database)) if database else sql.SQL("")
            conn.execute(sql.SQL("ALTER ROLE {}{} RESET ALL").format(target, where))
    _log.warning("database role %s had been changed by its tenant (%s); restored", role, "; ".join(changed))
    return changed


def check_tenant_roles() -> list[str]:
    """The operator's check: what PUBLIC (so every tenant) may still do on this server, and
    which tenant roles had been changed (now restored); one line each, empty when all is well."""
    with owner_session() as session:
        found = public_exposures(driver(session.connection()))
    for tenant in list_tenants():
        found += [
            f"tenant {tenant.name} had changed its role's {what}; restored" for what in restore_role(tenant.role_name)
        ]
    return found


def _role_url(role: str) -> str:
    return (
        make_url(database_url()).set(username=role, password=role_password(role)).render_as_string(hide_password=False)
    )


def tenant_engine(name: str | Tenant) -> Engine:
    """A cached engine connected as tenant ``name``: row-level security applies."""
    return engine_for(tenant_url(name), tenant=True)


@contextmanager
def tenant_session(name: str | Tenant) -> Iterator[Session]:
    """A session as tenant ``name``: commit on success, rollback on error."""
    with session_scope(tenant_engine(name)) as session:
        yield session


@contextmanager
def session() -> Iterator[Session]:
    """The session notebook code uses. In a tenant's process (``WORKBENCH_TENANT_DATABASE_URL``
    set by the hub or the worker) it connects as that tenant's role; otherwise (single-user
    mode) the database is migrated if needed and tenant ``local`` is created on first use."""
    url = os.environ.get(TENANT_URL_ENV)
    engine = engine_for(normalize_url(url), tenant=True) if url else tenant_engine(_local_tenant(database_url()))
    with session_scope(engine) as scope:
        yield scope


_ACTING = threading.Lock()  # the environment is the process's: one tenant at a time acts in it


@contextmanager
def acting_as(name: str | Tenant) -> Iterator[None]:
    """Library calls in this block act as tenant ``name`` (its role, through :func:`session`),
    as in the tenant's own server: for trusted processes that work for tenants in turn."""
    with _ACTING:
        previous = os.environ.get(TENANT_URL_ENV)
        os.environ[TENANT_URL_ENV] = tenant_url(name)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(TENANT_URL_ENV, None)
            else:
                os.environ[TENANT_URL_ENV] = previous


def current_tenant() -> Tenant:
    """The tenant that :func:`session` acts as."""
    with session() as scope:
        tenant = scope.scalar(select(Tenant).where(Tenant.role_name == func.current_user()))
        if tenant is None:
            role = scope.scalar(select(func.current_user()))
            raise TenantError(f"database role {role!r} in {TENANT_URL_ENV} is not an active tenant")
        return tenant


@lru_cache
def _local_tenant(owner_url: str) -> str:
    """Single-user mode: the schema at head and tenant ``local`` present (once per process)."""
    if current_revision() != head_revision():
        upgrade()
    with owner_session() as scope:
        exists = scope.scalar(select(Tenant.id).where(Tenant.name == LOCAL_TENANT))
    if exists is None:
        create_tenant(LOCAL_TENANT)
    return LOCAL_TENANT


def _active_tenant(session: Session, name: str | Tenant) -> Tenant:
    """The active tenant called ``name`` (a Tenant stands for its name)."""
    name = validate_name(name.name if isinstance(name, Tenant) else name)
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise TenantError(f"no tenant named {name!r}; `workbench tenant list` shows them")
    if tenant.removed_at is not None:
        raise TenantError(f"tenant {name!r} was removed on {tenant.removed_at:%Y-%m-%d %H:%M}")
    return tenant


def _role_prefix(conn: psycopg.Connection) -> str:
    prefix = os.environ.get("WORKBENCH_ROLE_PREFIX")
    if prefix is None:
        prefix = cast(TupleRow, conn.execute("SELECT current_database()").fetchone())[0].lower() + "_"
    return prefix
