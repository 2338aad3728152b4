"""A hostile tenant against what runs as root: provisioning, the account it gets, the Python it runs.

A real hub as root (``hub_harness.running_hub``) with two tenants, a hostile one and a
victim, both signed up and approved through the hub. The hostile tenant plants links in its
home through its JupyterLab terminal (the server's terminal API and websocket, as its browser
would), or as its own unix account where a test needs no server, then restarts its server,
which provisions again (the copy of the example notebooks). Each test asserts that the attack
failed and that nothing of the victim's, of the Python environment, the package or the
notebooks was changed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_harness import Hub, approved_tenant, as_tenant, in_terminal, restart_server, running_hub

import workbench
from workbench import store
from workbench.errors import HubError
from workbench.hub._provision import provision, unix_name
from workbench.hub._settings import Settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="unix accounts per tenant exist only when the hub runs as root"),
]

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
PYTHON_TREES = (Path(sysconfig.get_paths()["data"]), Path(workbench.__file__).parent)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    with running_hub() as running:
        yield running


@pytest.fixture(scope="module")
def tenants(hub: Hub) -> dict[str, str]:
    return {"hostile": approved_tenant(hub, "eve"), "victim": approved_tenant(hub, "vic")}


def _home(name: str) -> Path:
    return Path(pwd.getpwnam(unix_name(name)).pw_dir)


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): owner, group, mode, size, contents' time."""
    entries = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        entries[str(path.relative_to(folder))] = (
            info.st_uid,
            info.st_gid,
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
        )
    return entries


def _not_root_only(trees: tuple[Path, ...]) -> list[str]:
    """Entries of ``trees`` not owned by root or writable by group or others (links aside)."""
    found = subprocess.run(
        [
            "find",
            *map(str, trees),
            "(",
            "!",
            "-user",
            "root",
            "-o",
            "-perm",
            "-g+w",
            "-o",
            "-perm",
            "-o+w",
            ")",
            "!",
            "-type",
            "l",
            "-print",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def _assert_python_untouched(hub: Hub, hostile: str, site_before: dict) -> None:
    assert _not_root_only((*PYTHON_TREES, hub.settings.notebooks)) == []
    assert _snapshot_top(SITE_PACKAGES) == site_before
    planted = as_tenant(hostile, f"touch {SITE_PACKAGES}/zz_evil.pth")  # and the tenant cannot write there
    assert planted.returncode != 0 and "Permission denied" in planted.stderr
    assert not (SITE_PACKAGES / "zz_evil.pth").exists()


def _snapshot_top(folder: Path) -> dict[str, tuple]:
    """The folder itself and its direct entries (a planted ``.pth`` would be one)."""
    info = folder.lstat()
    top = {".": (info.st_uid, info.st_mode, info.st_mtime_ns)}
    for entry in os.scandir(folder):
        info = entry.stat(follow_symlinks=False)
        top[entry.name] = (info.st_uid, info.st_mode, info.st_mtime_ns)
    return top


@pytest.fixture
def root_owned_folder() -> Iterator[Path]:
    """A folder and a file only root may write (0755/0644), outside every home."""
    folder = Path(tempfile.mkdtemp(prefix="workbench-root-only-"))
    folder.chmod(0o755)
    (folder / "config").write_text("root's\n")
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _in_jupyterlab(hub: Hub, client, hostile: str, command: str) -> None:
    """``command`` typed into the hostile tenant's JupyterLab terminal; it must succeed."""
    status, printed = in_terminal(hub, client, hostile, command)
    assert status == 0, printed


@pytest.mark.parametrize("target", ["victim_home", "site_packages", "root_owned", "dangling_in_victim_home"])
def test_a_linked_live_folder_is_neither_followed_nor_chowned_by_provisioning(hub, tenants, target, root_owned_folder):
    hostile, victim = tenants["hostile"], tenants["victim"]
    victim_home = _home(victim)
    link = {
        "victim_home": victim_home,
        "site_packages": SITE_PACKAGES,
        "root_owned": root_owned_folder,
        "dangling_in_victim_home": victim_home / "live-planted",
    }[target]
    victim_before, root_before = _snapshot(victim_home), _snapshot(root_owned_folder)
    site_before = _snapshot_top(SITE_PACKAGES)
    client = hub.login(hostile)
    client.start_server(hostile)
    _in_jupyterlab(hub, client, hostile, f"rm -rf ~/live && ln -s {link} ~/live && test -L ~/live")
    # the same home also holds file links: into the victim's home (dangling), to a root-owned
    # file, and to a missing path under /etc (root could create it, the tenant cannot)
    missing_etc = Path("/etc") / f"workbench-planted-{secrets.token_hex(4)}.ipynb"
    _in_jupyterlab(
        hub,
        client,
        hostile,
        f"rm -f ~/01_quickstart.ipynb ~/02_parameter_sweep.ipynb ~/03_strategies_and_keys.ipynb"
        f" && ln -s {victim_home}/planted.ipynb ~/01_quickstart.ipynb"
        f" && ln -s {root_owned_folder}/config ~/02_parameter_sweep.ipynb"
        f" && ln -s {missing_etc} ~/03_strategies_and_keys.ipynb",
    )

    restart_server(client, hostile)  # provisions again before the server starts

    assert _snapshot(victim_home) == victim_before  # nothing of the victim's changed or was added
    assert _snapshot(root_owned_folder) == root_before
    assert not missing_etc.exists() and not (victim_home / "live-planted").exists()
    assert (_home(hostile) / "live").is_symlink()  # left as the tenant made it, not written through
    status, printed = in_terminal(hub, client, hostile, f"ls {victim_home}/")  # nor can it read the victim's home
    assert status != 0 and "Permission denied" in printed
    _assert_python_untouched(hub, hostile, site_before)
    home = os.stat(_home(hostile))
    assert stat.S_IMODE(home.st_mode) == 0o700 and home.st_uid == pwd.getpwnam(unix_name(hostile)).pw_uid


def test_provisioning_copies_missing_notebooks_as_the_tenant_and_keeps_edits(hub, tenants):
    hostile = tenants["hostile"]
    home, account = _home(hostile), pwd.getpwnam(unix_name(hostile))
    edited = as_tenant(hostile, "rm -rf ~/live ~/04_go_live.ipynb && echo mine > ~/05_custom_rules.ipynb")
    assert edited.returncode == 0, edited.stderr
    provision(hostile, Settings.from_env())
    assert (home / "05_custom_rules.ipynb").read_text() == "mine\n"  # never overwritten
    restored = [home / "04_go_live.ipynb", *sorted((home / "live").iterdir())]
    assert len(restored) > 1
    for path in [home / "live", *restored]:  # missing ones copied back, by the tenant's own account
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (account.pw_uid, account.pw_gid) and not stat.S_ISLNK(info.st_mode)
        assert not stat.S_IMODE(info.st_mode) & 0o077


def test_an_account_the_hub_did_not_create_is_refused(hub):
    name = hub.new_name("mal")  # the harness deletes the account afterwards
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/bash", "--comment", f"workbench tenant {name}", unix_name(name)],
        check=True,
        capture_output=True,
    )
    home = _home(name)
    before = _snapshot(home)
    with pytest.raises(HubError) as refused:
        provision(name, Settings.from_env())
    message = str(refused.value)
    assert message == (
        f"unix account {unix_name(name)} already exists and was not created by this hub: "
        f"refusing to give it to tenant {name!r} (remove that account or pick another name)"
    )
    assert "\n" not in message
    assert _snapshot(home) == before  # no notebook copied, no mode changed
    assert name not in {t.name for t in store.list_tenants(include_removed=True)}  # no database role either
