"""Exchange keys for one run, from the worker's memory to the run's kernel, and nowhere else.

The worker (trusted: it holds the master key) decrypts the keys of the run's session account
when the run starts and serves them **once** over a unix socket in the run's folder (the
worker's, 0700, or 0711 when the run executes as another account; the socket 0600, owned by
the account the run executes as). The kernel is already
running by then (a warm kernel, see ``_pool``): just before the notebook's first cell it is
armed (``arm``) with the run's session, the socket's path and a one-time token, never the
keys; the first connection that presents the token and comes from the run's unix user
(``SO_PEERCRED``) gets the keys, any connection closes the socket for good. Inside the run,
``RunVault`` is the vault backend, so the tenant's code calls
``workbench.vault.keys_for(account)`` as it would anywhere else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from workbench.errors import VaultError
from workbench.vault import Account, ExchangeKeys, Secret, VaultBackend, use
from workbench.vault._exchange import check as check_keys

_MAX_REQUEST = 256
_TIMEOUT = 10.0


class KeyHandoff:
    """Worker side: serves ``keys`` once to the run's kernel, which asks with ``path`` and
    ``token`` (see ``arm``). ``token`` is also a redaction (it must not reach outputs)."""

    def __init__(self, keys: ExchangeKeys, folder: Path, uid: int | None = None, gid: int | None = None):
        self._keys = keys
        self.path = folder / "keys.sock"
        self.token = secrets.token_urlsafe(32)
        self._uid = os.getuid() if uid is None else uid
        self._owner = (uid, cast(int, gid)) if uid is not None else None  # callers pass both or neither
        self._server: asyncio.base_events.Server | None = None
        self.served = False

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)
        if self._owner:
            os.chown(self.path, *self._owner)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.served:  # only the first connection is answered
            writer.close()
            return
        self.served = True
        await self.close()
        try:
            peer_uid = _peer_uid(writer.get_extra_info("socket"))
            line = await asyncio.wait_for(reader.readline(), _TIMEOUT)
            token = line[:_MAX_REQUEST].strip().decode(errors="replace")
            if peer_uid == self._uid and hmac.compare_digest(token.encode(), self.token.encode()):
                writer.write(json.dumps(_as_json(self._keys)).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class RunVault(VaultBackend):
    """Kernel side: the vault inside a live run. It can hand out the keys of the run's own
    session account, fetched once from the worker; everything else is refused."""

    def __init__(self, path: str | None, token: str | None, account_id: int | None, session_id: str):
        self._path, self._token, self._account = path, token, account_id
        self._session = session_id
        self._keys: ExchangeKeys | None = None

    def keys_for(self, account_id: int) -> ExchangeKeys:
        if self._account is None:
            raise VaultError(
                f"session #{self._session} trades on paper: it has no exchange account, so this run has no keys"
            )
        if int(account_id) != self._account:
            raise VaultError(
                f"this run of session #{self._session} may use only the keys of its own "
                f"account {self._account}, not account {account_id}"
            )
        if self._keys is None:
            self._keys = self._fetch()
        return self._keys

    def check(self, account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
        return check_keys(self.keys_for(account_id), ccxt_config)

    def add_account(self, *args: Any) -> int:
        raise self._refused("add_account")

    def accounts(self) -> list[Account]:
        raise self._refused("accounts")

    def key_warning(self, account_id: int) -> str:
        return ""  # the run cannot list accounts; the notebook server shows the warnings

    def deactivate(self, account_id: int) -> None:
        raise self._refused("deactivate")

    def remove(self, account_id: int) -> None:
        raise self._refused("remove")

    def _refused(self, what: str) -> VaultError:
        return VaultError(
            f"vault.{what} is not available inside a live run of session #{self._session}; "
            f"use it from your notebook server"
        )

    def _fetch(self) -> ExchangeKeys:
        token, self._token = self._token, None
        if not token or not self._path:
            raise VaultError(
                f"this run of session #{self._session} already received its keys once; they are served a single time"
            )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(_TIMEOUT)
                conn.connect(self._path)
                conn.sendall(token.encode() + b"\n")
                reply = conn.makefile("rb").readline()
        except OSError as exc:
            raise VaultError(
                f"the worker did not hand over the keys of account {self._account} "
                f"({type(exc).__name__}: {exc.strerror or exc})"
            ) from None
        if not reply:
            raise VaultError(f"the worker refused the keys of account {self._account} to this process")
        data = json.loads(reply)
        return ExchangeKeys(
            data["account_id"],
            data["exchange"],
            Secret(data["api_key"]),
            Secret(data["secret"]),
            Secret(data["passphrase"]) if data["passphrase"] else None,
        )


def arm(session_id: int, account_id: int | None, path: str | None, token: str | None) -> None:
    """Make ``RunVault`` this kernel's vault for one run; the slot calls it (a silent execute,
    nothing kept in the tenant's namespace or history) right before the notebook runs."""
    use(RunVault(path, token, account_id, str(session_id)))


def _as_json(keys: ExchangeKeys) -> dict[str, Any]:
    return {
        "account_id": keys.account_id,
        "exchange": keys.exchange,
        "api_key": keys.api_key.reveal(),
        "secret": keys.secret.reveal(),
        "passphrase": keys.passphrase.reveal() if keys.passphrase else None,
    }


def _peer_uid(sock: socket.socket) -> int:
    """The unix user of the process at the other end (Linux ``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
