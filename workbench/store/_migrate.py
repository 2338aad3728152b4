"""Schema migrations: Alembic driven from Python, no alembic.ini needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text

from workbench.errors import DatabaseError
from workbench.store._engine import owner_engine

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of the workbench knows."""
    return cast(str, ScriptDirectory.from_config(_config()).get_current_head())  # one head: never None


def current_revision() -> str | None:
    """The revision the database is at (None: empty database)."""
    with owner_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the newest)."""
    _migrate(command.upgrade, revision)


def downgrade(revision: str) -> None:
    """Migrate the database down to ``revision`` (``base``: drop every table)."""
    _migrate(command.downgrade, revision)


def _migrate(step: Callable[[Config, str], None], revision: str) -> None:
    with owner_engine().begin() as connection:
        _check_owner(connection)
        try:
            step(_config(connection), revision)
        except CommandError as exc:
            raise DatabaseError(f"cannot migrate to revision {revision!r}: {exc}") from None


def _check_owner(connection: Connection) -> None:
    """Row-level security is forced on the tenant tables, so an owner that cannot bypass it
    would see nothing; say so instead of failing later in a confusing way."""
    role, bypass, createrole = connection.execute(
        text(
            "SELECT rolname, rolsuper OR rolbypassrls, rolsuper OR rolcreaterole "
            "FROM pg_roles WHERE rolname = current_user"
        )
    ).one()
    if not (bypass and createrole):
        raise DatabaseError(
            f"database role {role!r} cannot own the workbench database: it needs "
            f"BYPASSRLS and CREATEROLE (or SUPERUSER); "
            f"run ALTER ROLE {role} BYPASSRLS CREATEROLE as a superuser"
        )
