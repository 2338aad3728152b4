"""Provisioning: what a tenant gets when an admin approves them, and loses when removed.

A tenant is three things that must agree: a PostgreSQL login role (``store.create_tenant``),
a workspace holding copies of the example notebooks, and, when the hub runs as root, a unix
account ``jupyter-<name>`` whose private home directory is that workspace (the way The
Littlest JupyterHub does it). ``provision`` is idempotent: the hub calls it on approval and
again before every spawn, so open sign-up and admin-created users end up the same.

Removal keeps every record: the database role loses its login and privileges and live
sessions stop (``store.remove_tenant``), the unix account is locked, the files stay.
"""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from workbench import store
from workbench.errors import HubError, TenantError
from workbench.hub._settings import UNIX_PREFIX, Settings

_log = logging.getLogger("workbench.hub")
# unix user names are at most 32 characters; "jupyter-" takes 8
MAX_NAME_LENGTH = 32 - len(UNIX_PREFIX)
# folders of the notebooks tree that are not the tenant's to edit (run from the package)
_NOT_COPIED = {"dashboards", ".ipynb_checkpoints", "__pycache__"}


def validate_username(name: str) -> str:
    """A hub user name that can be a tenant, a database role and a unix account, else HubError."""
    try:
        store.validate_name(name)
    except TenantError as exc:
        raise HubError(str(exc)) from None
    if len(name) > MAX_NAME_LENGTH:
        raise HubError(f"user name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    return name


def unix_name(name: str) -> str:
    """The unix account of tenant ``name`` on a hub run as root."""
    return UNIX_PREFIX + name


def workspace(name: str, settings: Settings) -> Path:
    """The folder tenant ``name``'s server starts in."""
    if settings.spawner == "local":
        return Path(pwd.getpwnam(unix_name(name)).pw_dir)
    if settings.spawner == "kube":
        return Path("/home/jovyan")  # inside the tenant's pod, on its own volume
    return settings.dev_users_dir / name


def provision(name: str, settings: Settings) -> None:
    """Make tenant ``name`` complete: database role, unix account (as root), workspace."""
    validate_username(name)
    _ensure_tenant(name)
    if settings.spawner == "local":
        _ensure_unix_account(name)
        _ensure_reachable(settings)
    if settings.spawner != "kube":  # a pod's volume is filled by its image's start hook
        _fill_workspace(workspace(name, settings), settings.notebooks,
                        owner=pwd.getpwnam(unix_name(name)) if settings.spawner == "local" else None)


def deprovision(name: str, settings: Settings) -> None:
    """Retire tenant ``name``: live sessions stopped, database role revoked, records and files kept."""
    active = {t.name for t in store.list_tenants()}
    if name in active:
        store.remove_tenant(name)
        _log.info("tenant %s removed: sessions stopped, database role revoked", name)
    if settings.spawner == "local" and _unix_account(name) is not None:
        _run("usermod", "--lock", "--expiredate", "1", "--shell", "/usr/sbin/nologin", unix_name(name))


def _ensure_tenant(name: str) -> None:
    known = {t.name: t for t in store.list_tenants(include_removed=True)}
    if name in known:
        if known[name].removed_at is not None:
            raise HubError(f"tenant {name!r} was removed on {known[name].removed_at:%Y-%m-%d}; "
                           "tenant names are never reused")
        return
    try:
        store.create_tenant(name)
        _log.info("tenant %s provisioned in the database", name)
    except TenantError:
        # another hub request created it a moment ago; anything else is a real error
        if name not in {t.name for t in store.list_tenants()}:
            raise


def _unix_account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(unix_name(name))
    except KeyError:
        return None


def _ensure_unix_account(name: str) -> None:
    """``jupyter-<name>`` with a private home (0700) and a group of its own."""
    if _unix_account(name) is None:
        _run("useradd", "--create-home", "--user-group", "--shell", "/bin/bash",
             "--comment", f"workbench tenant {name}", unix_name(name))
        _log.info("unix account %s created", unix_name(name))
    Path(pwd.getpwnam(unix_name(name)).pw_dir).chmod(0o700)


def _ensure_reachable(settings: Settings) -> None:
    """Tenants' accounts must run this Python and read the package and the notebooks (all
    root-owned and read-only to them): grant the search (x) bit on the folders above, never
    read, as the embedded PostgreSQL does for its binaries (e.g. a pyenv Python in /root)."""
    import workbench

    for target in (Path(sys.base_prefix), Path(sys.prefix), Path(workbench.__file__).parent, settings.notebooks):
        for folder in (target.resolve(), *target.resolve().parents):
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXOTH)
                _log.warning("gave other users search access (o+x) to %s so tenants can run the workbench", folder)


def _fill_workspace(folder: Path, notebooks: Path, owner: pwd.struct_passwd | None) -> None:
    """Copy the example notebooks the workspace lacks; never overwrite the tenant's edits."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not notebooks.is_dir():
        _log.warning("no example notebooks in %s; workspace %s stays empty", notebooks, folder)
        return
    for source in sorted(notebooks.rglob("*")):
        relative = source.relative_to(notebooks)
        if _NOT_COPIED & set(relative.parts) or not (source.is_dir() or source.suffix in (".ipynb", ".md", ".csv")):
            continue
        target = folder / relative
        if source.is_dir():
            target.mkdir(exist_ok=True)
        elif not target.exists():
            shutil.copyfile(source, target)
        else:
            continue
        if owner is not None:
            os.chown(target, owner.pw_uid, owner.pw_gid)


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise HubError(f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
