"""The master keyring: numbered AES-256 master keys that wrap the tenant data keys.

Where it comes from, first match wins:

1. ``WORKBENCH_MASTER_KEY``: one or more ``VERSION:KEY`` entries separated by commas or
   whitespace; a bare ``KEY`` is version 1 (the form a secrets manager hands out).
2. ``WORKBENCH_MASTER_KEY_FILE``: a keyring file (below) that only its owner may read.
3. ``<WORKBENCH_HOME>/master.key``: the local default, generated on first start (mode 0600).

A keyring file holds one ``VERSION:KEY`` per line (``#`` starts a comment). ``KEY`` is 32
random bytes in base64 (url-safe or standard). The highest version wraps new data keys;
lower versions stay until ``workbench vault rotate`` has re-wrapped every data key off
them, then it retires them. Messages never echo a key, only where it came from.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench import _home
from workbench.errors import VaultError
from workbench.vault._envelope import KEY_SIZE

ENV_KEY = "WORKBENCH_MASTER_KEY"
ENV_FILE = "WORKBENCH_MASTER_KEY_FILE"
DEFAULT_FILE_NAME = "master.key"

_NEW_KEY_COMMAND = 'python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
_FILE_HEADER = (
    "# workbench master keyring: one VERSION:KEY per line, KEY = 32 bytes in base64.\n"
    "# The highest version wraps new tenant data keys; `workbench vault rotate` adds and retires versions.\n"
)


@dataclass(frozen=True)
class Keyring:
    """Master keys by version, and where they came from (for messages and rotation)."""

    keys: dict[int, bytes]
    source: str
    path: Path | None = None  # the file to rewrite on rotation; None for the environment

    def __repr__(self) -> str:
        return f"Keyring(versions={sorted(self.keys)}, source={self.source!r})"

    @property
    def current(self) -> int:
        """The version that wraps new data keys: the highest."""
        return max(self.keys)

    def key(self, version: int, what: str) -> bytes:
        """The master key of ``version``; ``what`` names the data key that needs it."""
        try:
            return self.keys[version]
        except KeyError:
            raise VaultError(
                f"{what} is wrapped under master key version {version}, which is not in the "
                f"keyring from {self.source} (it has versions {sorted(self.keys)}); restore that "
                "version to the keyring"
            ) from None

    def with_new_version(self) -> Keyring:
        """A copy with a fresh random key one version above the current one."""
        return Keyring({**self.keys, self.current + 1: os.urandom(KEY_SIZE)}, self.source, self.path)

    def without(self, versions: set[int]) -> Keyring:
        """A copy without ``versions`` (never the current one)."""
        keep = {v: k for v, k in self.keys.items() if v not in versions or v == self.current}
        return Keyring(keep, self.source, self.path)

    def dumps(self) -> str:
        lines = [f"{v}:{base64.urlsafe_b64encode(k).decode()}\n" for v, k in sorted(self.keys.items())]
        return _FILE_HEADER + "".join(lines)


def master_key_missing() -> str | None:
    """None when this machine has the master keyring (``WORKBENCH_MASTER_KEY``,
    ``WORKBENCH_MASTER_KEY_FILE`` or ``<home>/master.key``); otherwise what to set, for a
    message. A machine that shares the database but not the hub's home must be given it."""
    if os.environ.get(ENV_KEY) or os.environ.get(ENV_FILE) or (_home.home() / DEFAULT_FILE_NAME).exists():
        return None
    return (
        f"neither {ENV_KEY} nor {ENV_FILE} is set and {_home.home() / DEFAULT_FILE_NAME} does not exist: "
        "give this machine the hub's master keyring"
    )


def load() -> Keyring:
    """The keyring this process may use; a missing, short or malformed key stops here."""
    if os.environ.get(ENV_KEY):
        return parse(os.environ[ENV_KEY], ENV_KEY)
    if os.environ.get(ENV_FILE):
        path = Path(os.environ[ENV_FILE]).expanduser()
        if not path.exists():
            raise VaultError(
                f"{ENV_FILE}={path} does not exist; write a key into it with "
                f"`{_NEW_KEY_COMMAND} > {path} && chmod 600 {path}`, or unset {ENV_FILE} to use "
                "the generated local key"
            )
        return _read(path)
    path = _home.home() / DEFAULT_FILE_NAME
    if not path.exists():
        _create(path, Keyring({1: os.urandom(KEY_SIZE)}, str(path), path))
    return _read(path)


def parse(text: str, source: str, path: Path | None = None) -> Keyring:
    """Parse keyring text (file lines or the environment variable's entries)."""
    entries = [e for line in text.splitlines() for e in re.split(r"[,\s]+", line.split("#", 1)[0]) if e]
    if not entries:
        raise VaultError(f"the master key from {source} is empty; {_how_to_fix(source)}")
    keys: dict[int, bytes] = {}
    for number, entry in enumerate(entries, 1):
        version_text, _, key_text = entry.rpartition(":")
        where = f"entry {number} of the master keyring from {source}"
        if version_text and not (version_text.isdigit() and int(version_text) > 0):
            raise VaultError(f"{where} has version {version_text!r}; a version is a whole number from 1 up")
        version = int(version_text or 1)
        if version in keys:
            raise VaultError(f"{where} repeats version {version}; give each key its own version")
        keys[version] = _decode(key_text, where, source)
    return Keyring(keys, source, path)


def _decode(text: str, where: str, source: str) -> bytes:
    padded = text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise VaultError(f"{where} is not base64; {_how_to_fix(source)}") from None
    if len(key) != KEY_SIZE:
        raise VaultError(f"{where} is {len(key)} bytes, a master key is {KEY_SIZE}; {_how_to_fix(source)}")
    return key


def _how_to_fix(source: str) -> str:
    target = f"set {ENV_KEY} to" if source == ENV_KEY else f"write into {source}"
    return f"{target} a key made with `{_NEW_KEY_COMMAND}`"


def _read(path: Path) -> Keyring:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise VaultError(
                f"the master key file {path} is accessible to group or others (mode {mode:04o}); run `chmod 600 {path}`"
            )
        text = path.read_text()
    except OSError as exc:
        raise VaultError(f"cannot read the master key file {path}: {exc.strerror}") from None
    return parse(text, str(path), path)


def write(keyring: Keyring) -> None:
    """Replace the keyring file atomically: readers see the old or the new file, whole."""
    if keyring.path is None:
        raise VaultError(
            f"the master keyring comes from {keyring.source}, which the workbench cannot rewrite; "
            f"add an entry {keyring.current}:NEWKEY there yourself (NEWKEY made with `{_NEW_KEY_COMMAND}`) "
            "and run the command again"
        )
    tmp = _write_temporary(keyring)
    os.replace(tmp, keyring.path)
    _fsync_directory(keyring.path.parent)


def _create(path: Path, keyring: Keyring) -> None:
    """Create the keyring file only if it is absent (a racing process may win: then keep theirs)."""
    tmp = _write_temporary(Keyring(keyring.keys, keyring.source, path))
    try:
        os.link(tmp, path)  # fails if path exists, so a half-written key is never visible
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    _fsync_directory(path.parent)


def _write_temporary(keyring: Keyring) -> Path:
    assert keyring.path is not None
    fd, name = tempfile.mkstemp(prefix=".master.key.", dir=keyring.path.parent)  # O_EXCL, 0600
    with os.fdopen(fd, "w") as file:
        file.write(keyring.dumps())
        file.flush()
        os.fsync(file.fileno())
    return Path(name)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
