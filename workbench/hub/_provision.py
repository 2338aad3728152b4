"""Provisioning: what a tenant gets when an admin approves them, and loses when removed.

A tenant is three things that must agree: a PostgreSQL login role (``store.create_tenant``),
a workspace holding copies of the example notebooks, and, when the hub runs as root, a unix
account ``jupyter-<name>`` whose private home directory is that workspace (the way The
Littlest JupyterHub does it). ``provision`` is idempotent: the hub calls it on approval and
again before every spawn, so open sign-up and admin-created users end up the same.

Removal keeps every record: the database role loses its login and privileges and live
sessions stop (``store.remove_tenant``), the unix account is locked, the files stay.

A tenant's home is hostile territory (symlinks, fifos, races): root never writes, chowns or
chmods a path inside it. The example notebooks are copied by a child process that has
dropped to the tenant's account (``_copy_missing``, run as ``python -m`` this module), which
moreover walks the workspace by descriptors and refuses links. The only root-side operation
on a home is the ``fchmod`` of the home directory itself, through a descriptor opened
without following links. An account ``jupyter-<name>`` is used only if this hub created it
(a marker under ``<home>/hub/accounts``): an existing account of someone else is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from workbench import store
from workbench.errors import HubError, TenantError
from workbench.hub._settings import UNIX_PREFIX, Settings

_log = logging.getLogger("workbench.hub")
# unix user names are at most 32 characters; "jupyter-" takes 8
MAX_NAME_LENGTH = 32 - len(UNIX_PREFIX)
# folders of the notebooks tree that are not the tenant's to edit (run from the package)
_NOT_COPIED = {"dashboards", ".ipynb_checkpoints", "__pycache__"}
_COPIED_SUFFIXES = (".ipynb", ".md", ".csv")
_COPY_TIMEOUT = 120.0  # seconds the tenant-side copy of the notebooks may take
# a workspace entry is opened without following a link, and a folder's fd is not a write target
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
    # the account first: one this hub did not create is refused before anything is made
    account = _ensure_unix_account(name, settings.hub_dir / "accounts") if settings.spawner == "local" else None
    _ensure_tenant(name)
    if account is not None:
        _ensure_reachable(settings)
        _fill_as_tenant(account, settings.notebooks)
    elif settings.spawner == "simple":  # (kube: a pod's volume is filled by its image's start hook)
        folder = workspace(name, settings)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for refused in _copy_missing(folder, settings.notebooks):
            _log.warning("workspace %s: %s", folder, refused)


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
            raise HubError(
                f"tenant {name!r} was removed on {known[name].removed_at:%Y-%m-%d}; tenant names are never reused"
            )
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


def _ensure_unix_account(name: str, markers: Path) -> pwd.struct_passwd:
    """``jupyter-<name>`` with a private home (0700) and a group of its own, created by this hub.

    The hub records each account it creates (``markers/<name>`` holds its uid, in the hub's
    root-only folder); an account of that name it did not create is someone else's, and
    handing it to a tenant would give the tenant that person's files (and them the tenant's).
    """
    markers.mkdir(mode=0o700, exist_ok=True)
    with _locked(markers / ".lock"):
        account = _unix_account(name)
        if account is None:
            _run(
                "useradd",
                "--create-home",
                "--user-group",
                "--shell",
                "/bin/bash",
                "--comment",
                f"workbench tenant {name}",
                unix_name(name),
            )
            account = pwd.getpwnam(unix_name(name))
            (markers / name).write_text(f"{account.pw_uid}\n")
            _log.info("unix account %s created", unix_name(name))
        elif _recorded_uid(markers / name) != account.pw_uid:
            raise HubError(
                f"unix account {unix_name(name)} already exists and was not created by this hub: "
                f"refusing to give it to tenant {name!r} (remove that account or pick another name)"
            )
    _make_home_private(account)
    return account


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One provisioning of accounts at a time (approval and a first spawn may race)."""
    with open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _recorded_uid(marker: Path) -> int | None:
    try:
        return int(marker.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _make_home_private(account: pwd.struct_passwd) -> None:
    """chmod 0700 the home itself (its entry in /home is root's), never what a link points to."""
    try:
        fd = os.open(account.pw_dir, _DIRECTORY_FLAGS)
    except OSError as exc:
        raise HubError(f"home {account.pw_dir} of {account.pw_name} is not a folder: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_uid != account.pw_uid:
            raise HubError(f"home {account.pw_dir} does not belong to {account.pw_name}")
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


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


def _fill_as_tenant(account: pwd.struct_passwd, notebooks: Path) -> None:
    """Copy the missing example notebooks into the account's home in a child process that has
    dropped to the account (groups, gid, uid): whatever the tenant planted there, the copy can
    do nothing the tenant could not do themselves."""
    result = subprocess.run(
        [sys.executable, "-I", "-m", __name__, account.pw_dir, str(notebooks)],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        umask=0o077,
        cwd="/",
        env={"HOME": account.pw_dir, "PATH": os.defpath, "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=_COPY_TIMEOUT,
        check=False,
    )
    for refused in result.stdout.splitlines():
        _log.warning("workspace of %s: %s", account.pw_name, refused)
    if result.returncode:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise HubError(f"could not copy the example notebooks into {account.pw_dir}: {reason}")


def _copy_missing(folder: Path, notebooks: Path) -> list[str]:
    """Copy the example notebooks ``folder`` lacks, never overwriting the tenant's edits; what
    was refused (an entry that is a link or not a folder), one line each.

    Every workspace entry is reached from the folder's descriptor without following links,
    and files are only created (``O_EXCL``), so a link, dangling or not, is never written
    through and nothing outside ``folder`` is touched."""
    if not notebooks.is_dir():
        return [f"no example notebooks in {notebooks}: the workspace stays as it is"]
    refused: list[str] = []
    root = os.open(folder, _DIRECTORY_FLAGS)
    try:
        for source, dirs, files in os.walk(notebooks):
            dirs[:] = sorted(d for d in dirs if d not in _NOT_COPIED)
            relative = Path(source).relative_to(notebooks)
            try:
                target = _open_folder(root, relative.parts)
            except OSError as exc:
                refused.append(
                    f"{relative}: not copied into, {cast(str, exc.strerror).lower()} (a link or not a folder)"
                )
                dirs[:] = []
                continue
            try:
                for name in sorted(f for f in files if f.endswith(_COPIED_SUFFIXES)):
                    _copy_new(Path(source) / name, name, target)
            finally:
                os.close(target)
    finally:
        os.close(root)
    return refused


def _open_folder(root: int, parts: tuple[str, ...]) -> int:
    """The descriptor of folder ``parts`` under ``root``, made where missing, links refused."""
    fd = os.dup(root)
    for part in parts:
        try:
            os.mkdir(part, 0o700, dir_fd=fd)
        except FileExistsError:
            pass
        try:
            child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _copy_new(source: Path, name: str, folder: int) -> None:
    """Create ``name`` in ``folder`` with ``source``'s bytes, unless an entry of that name exists."""
    try:
        fd = os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=folder)
    except FileExistsError:
        return  # the tenant's own copy (or whatever they put there) stays
    with open(fd, "wb") as target:
        target.write(source.read_bytes())


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise HubError(f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()}")


if __name__ == "__main__":  # the copy as the tenant (``_fill_as_tenant``)
    for line in _copy_missing(Path(sys.argv[1]), Path(sys.argv[2])):
        print(line)
