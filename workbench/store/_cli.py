"""``workbench db ...`` and ``workbench tenant ...``: the operator's commands.

The store (SQLAlchemy, Alembic, psycopg) is imported when a command runs, not when the
parser is built, so ``workbench --help`` and other commands stay fast.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from workbench.errors import DatabaseError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.store._server import EmbeddedServer


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="the database: embedded server, migrations, URLs")
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("start", help="start the embedded PostgreSQL server (if not running)").set_defaults(func=_start)
    actions.add_parser("stop", help="stop the embedded PostgreSQL server").set_defaults(func=_stop)
    actions.add_parser("status", help="is the embedded server running? (exit status 3: no)").set_defaults(func=_status)
    upgrade = actions.add_parser("upgrade", help="migrate the schema up (default: newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=_upgrade)
    downgrade = actions.add_parser("downgrade", help="migrate the schema down to REVISION (or base)")
    downgrade.add_argument("revision")
    downgrade.set_defaults(func=_downgrade)
    url = actions.add_parser("url", help="print the owner's (or a tenant's) connection URL")
    url.add_argument("--tenant", metavar="NAME", help="print this tenant's URL instead")
    url.set_defaults(func=_url)
    actions.add_parser(
        "check",
        help="what tenant roles may still do that they should not, and "
        "roles their tenants changed (restored); exit status 1 when anything is found",
    ).set_defaults(func=_check)

    tenant = subparsers.add_parser("tenant", help="add, list and remove tenants")
    actions = tenant.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a tenant and its database role")
    add.add_argument("name")
    add.set_defaults(func=_tenant_add)
    listing = actions.add_parser("list", help="list tenants")
    listing.add_argument("--all", action="store_true", help="include removed tenants")
    listing.set_defaults(func=_tenant_list)
    remove = actions.add_parser("remove", help="revoke a tenant's role and stop its sessions (its records are kept)")
    remove.add_argument("name")
    remove.set_defaults(func=_tenant_remove)


def _embedded() -> EmbeddedServer:
    from workbench.store import _engine

    for variable in _engine.OWNER_URL_ENV:
        if os.environ.get(variable):
            raise DatabaseError(
                f"{variable} is set, so the workbench uses that server and not "
                f"the embedded one; unset it to manage the embedded server"
            )
    return _engine.embedded_server()


def _start(args: argparse.Namespace) -> int:
    status = _embedded().start()
    print(f"PostgreSQL running (pid {status.pid}), socket in {status.socket_dir}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    server = _embedded()
    print("PostgreSQL stopped" if server.stop() else f"PostgreSQL was not running in {server.root}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _embedded().status()
    if not status.running:
        print(f"PostgreSQL not running (data in {status.data_dir})")
        return 3
    print(f"PostgreSQL running (pid {status.pid}), data in {status.data_dir}, socket in {status.socket_dir}")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from workbench.store import _migrate

    _migrate.upgrade(args.revision)
    print(f"database at revision {_migrate.current_revision()}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from workbench.store import _migrate

    _migrate.downgrade(args.revision)
    print(f"database at revision {_migrate.current_revision() or 'base (empty)'}")
    return 0


def _url(args: argparse.Namespace) -> int:
    from workbench.store import _engine, _tenants

    if args.tenant is None:
        print(_engine.database_url())
    else:
        _require_head()
        print(_tenants.tenant_url(args.tenant))
    return 0


def _check(args: argparse.Namespace) -> int:
    from workbench.store import _tenants

    _require_head()
    found = _tenants.check_tenant_roles()
    for line in found:
        print(line)
    if not found:
        print("tenant roles have only what the workbench grants them")
    return 1 if found else 0


def _tenant_add(args: argparse.Namespace) -> int:
    from workbench.store import _tenants

    _require_head()
    tenant = _tenants.create_tenant(args.name)
    print(f"created tenant {tenant.name} (database role {tenant.role_name})")
    return 0


def _tenant_list(args: argparse.Namespace) -> int:
    from workbench.store import _tenants

    _require_head()
    for tenant in _tenants.list_tenants(include_removed=args.all):
        removed = f"  removed {tenant.removed_at:%Y-%m-%d %H:%M}" if tenant.removed_at else ""
        print(f"{tenant.name}\t{tenant.role_name}\tcreated {tenant.created_at:%Y-%m-%d %H:%M}{removed}")
    return 0


def _tenant_remove(args: argparse.Namespace) -> int:
    from workbench.store import _tenants

    _require_head()
    tenant = _tenants.remove_tenant(args.name)
    print(f"removed tenant {tenant.name}: role {tenant.role_name} can no longer log in; its records are kept")
    return 0


def _require_head() -> None:
    from workbench.store._opener import require_head  # SQLAlchemy and Alembic load only now

    require_head()
