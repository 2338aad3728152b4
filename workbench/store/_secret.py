"""Passwords of the database roles, derived from one secret so none of them is ever stored.

The trusted side can always recompute a tenant's password (``workbench db url --tenant``)
as HMAC-SHA256(secret, role name); a tenant only ever learns its own password, and the
secret stays in a 0600 file in the workbench home (or ``WORKBENCH_DB_ROLE_SECRET`` when
several machines must agree on it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import psycopg

from workbench._home import home
from workbench.errors import DatabaseError

_ENV = "WORKBENCH_DB_ROLE_SECRET"
_FILE = "db-role.key"
_MIN_LENGTH = 32


def role_secret_missing() -> str | None:
    """None when this machine has the tenant roles' secret (``WORKBENCH_DB_ROLE_SECRET`` or
    ``<home>/db-role.key``); otherwise what to set, for a message. A machine that shares the
    database but not the hub's home must be given it: one generated here would differ."""
    if _ENV in os.environ or (home() / _FILE).exists():
        return None
    return f"{_ENV} is not set and {home() / _FILE} does not exist: set {_ENV} to the hub's role secret"


def _secret() -> bytes:
    """The role secret from the environment, or from its file (created on first use)."""
    value = os.environ.get(_ENV)
    if value is None:
        path = home() / _FILE
        if not path.exists():
            _create(path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DatabaseError(
                f"{path} is readable by other users (mode {stat.filemode(mode)}); run `chmod 600 {path}`"
            )
        value = path.read_text().strip()
        where = str(path)
    else:
        where = f"environment variable {_ENV}"
    if len(value) < _MIN_LENGTH:
        raise DatabaseError(
            f"the database role secret in {where} is shorter than {_MIN_LENGTH} characters; set a longer random value"
        )
    return value.encode()


def _create(path: Path) -> None:
    """Write a new random secret; a hard link publishes it whole, so two processes starting
    at once agree on one secret."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process won the race; use its secret
    finally:
        draft.unlink()


def role_password(role: str) -> str:
    """The login password of database role ``role`` (64 hex digits, URL-safe)."""
    return hmac.new(_secret(), b"workbench-db-role:" + role.encode(), hashlib.sha256).hexdigest()


def password_verifier(conn: psycopg.Connection, role: str) -> str:
    """The SCRAM-SHA-256 verifier of ``role``'s password, computed by libpq on this side, so
    CREATE/ALTER ROLE never sends the password itself (it could end up in a server log)."""
    verifier = conn.pgconn.encrypt_password(role_password(role).encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()
