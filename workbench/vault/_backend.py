"""The vault interface the notebook helpers talk to, and the choice of implementation.

``LocalVault`` (single-user mode) holds the master keyring in this process and reads and
writes PostgreSQL directly. In the hub deployment a tenant's server must not hold the
master key, so it gets another ``VaultBackend`` that forwards the same calls over HTTP to
the hub's workbench service, which runs a ``LocalVault`` on the trusted side. That class
belongs to the JupyterHub issue: it implements the abstract methods below and is
installed with ``workbench.vault.use(...)`` (or chosen in ``backend()``) — nothing else
in the vault changes.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workbench import _plugins as plugins
from workbench.vault._exchange import ExchangeKeys
from workbench.vault._secret import Secret


@dataclass(frozen=True)
class Account:
    """An exchange account as listings show it: the key only as a masked hint, and what the
    exchange last said about it (``None``: not asked, or it could not tell)."""

    id: int
    exchange: str
    label: str
    permissions: str
    is_active: bool
    key_hint: str
    created_at: datetime
    can_withdraw: bool | None = None
    ip_restricted: bool | None = None
    key_warning: str = ""


@dataclass(frozen=True)
class KeyUse:
    """Why a key is decrypted, for the audit log: ``purpose`` (e.g. ``live run``), for which
    session and run."""

    purpose: str
    session_id: int | None = None
    run_id: int | None = None


class VaultBackend(abc.ABC):
    """Stores a tenant's exchange keys encrypted and hands them out only to trusted callers."""

    #: the keys are held by another process (the workbench service): what changes a tenant's
    #: secrets, notification channels included, goes through it
    remote: bool = False

    @abc.abstractmethod
    def add_account(
        self,
        exchange: str,
        api_key: Secret,
        secret: Secret,
        passphrase: Secret | None,
        permissions: str,
        label: str,
        ccxt_config: Mapping[str, Any] | None = None,
    ) -> int:
        """Ask the exchange what the key may do, then encrypt and store it; its id."""

    @abc.abstractmethod
    def accounts(self) -> list[Account]:
        """The tenant's accounts, newest last, keys masked."""

    @abc.abstractmethod
    def deactivate(self, account_id: int) -> None:
        """Keep the account but stop live runs from getting its keys."""

    @abc.abstractmethod
    def remove(self, account_id: int) -> None:
        """Delete the account and its ciphertexts."""

    @abc.abstractmethod
    def keys_for(self, account_id: int) -> ExchangeKeys:
        """The decrypted keys of an active account, for the process that trades with it."""

    @abc.abstractmethod
    def check(self, account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Call the exchange with the account's keys; the non-zero balance totals."""

    def key_warning(self, account_id: int) -> str:
        """What to fix about the account's key, from the exchange's last answer ('' when nothing)."""
        return next((a.key_warning for a in self.accounts() if a.id == account_id), "")


_backend: VaultBackend | None = None


def backend() -> VaultBackend:
    """The vault of this process: the one set with ``use``, else a ``LocalVault``."""
    global _backend
    if _backend is None and os.environ.get("WORKBENCH_SERVICE_URL"):  # a tenant server in the hub
        _backend = plugins.load("workbench.vault_backends", "service")()
    if _backend is None:
        from workbench.vault._local import LocalVault

        _backend = LocalVault()
    return _backend


def use(vault: VaultBackend | None) -> None:
    """Make ``vault`` the one the module-level helpers use (``None``: back to the default)."""
    global _backend
    _backend = vault
