"""The key vault: a tenant's exchange API keys, AES-256-GCM encrypted at rest.

From a notebook::

    import workbench as wb

    wb.vault.form()                                  # password fields; nothing typed into code
    account = wb.vault.add_account("binance", api_key, secret, permissions="read", label="main")
    wb.vault.accounts()                              # keys masked: ab12…9f
    wb.vault.check(account)                          # fetch_balance through ccxt, or a clear VaultError
    wb.vault.audit()                                 # every use of the tenant's keys, newest first
    wb.vault.deactivate(account); wb.vault.remove(account)

Adding and checking a key asks the exchange what it may do (``_permissions``): a key that may
withdraw is refused unless the operator allows such keys, and a ``KeyWarning`` says what to
fix (e.g. the IP addresses to whitelist for it). Every use of a decrypted key is in ``audit()``.

``keys_for(account)`` gives the trading process its keys as ``Secret`` objects, which
print masked. The helpers use ``backend()``: a ``LocalVault`` (this process holds the
master key) unless another ``VaultBackend`` was installed with ``use``. How keys are
stored: ``_envelope`` (ciphertext format), ``_keyring`` (master key), ``_rotate``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workbench.errors import VaultError
from workbench.vault._backend import Account, KeyUse, VaultBackend, backend, use
from workbench.vault._exchange import ExchangeKeys
from workbench.vault._form import form
from workbench.vault._keyring import master_key_missing
from workbench.vault._secret import Secret, mask

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from workbench.vault._local import LocalVault

__all__ = [
    "Account",
    "ExchangeKeys",
    "KeyUse",
    "KeyWarning",
    "LocalVault",
    "Secret",
    "VaultBackend",
    "VaultError",
    "accounts",
    "add_account",
    "audit",
    "backend",
    "check",
    "deactivate",
    "form",
    "keys_for",
    "mask",
    "master_key_missing",
    "remove",
    "use",
]


class KeyWarning(UserWarning):
    """Something to fix about a stored key (e.g. no IP restriction); it was stored all the same."""


def add_account(
    exchange: str,
    api_key: str | Secret,
    secret: str | Secret,
    passphrase: str | Secret | None = None,
    permissions: str = "read",
    label: str = "",
    ccxt_config: Mapping[str, Any] | None = None,
) -> int:
    """Ask the exchange what the key may do, then encrypt and store the account's keys; its id.

    ``exchange`` is a ccxt id; ``ccxt_config`` adds ccxt constructor options (timeout, urls) for
    that question. A key that may withdraw is refused (``VaultError``); what else to fix comes
    as a ``KeyWarning``.
    """
    vault = backend()
    account_id = vault.add_account(
        exchange,
        Secret(api_key),
        Secret(secret),
        Secret(passphrase) if passphrase else None,
        permissions,
        label,
        ccxt_config,
    )
    _warn_about(vault, account_id)
    return account_id


def accounts() -> pd.DataFrame:
    """The tenant's exchange accounts, one row each, the API key shown only as its hint."""
    import pandas as pd

    columns = [
        "id",
        "exchange",
        "label",
        "permissions",
        "is_active",
        "key_hint",
        "created_at",
        "can_withdraw",
        "ip_restricted",
        "key_warning",
    ]
    return pd.DataFrame([vars(a) for a in backend().accounts()], columns=columns).set_index("id")


def deactivate(account_id: int) -> None:
    """Keep the account listed but refuse its keys to live runs."""
    backend().deactivate(account_id)


def remove(account_id: int) -> None:
    """Delete the account and its encrypted keys."""
    backend().remove(account_id)


def check(account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Call the exchange's ``fetch_balance`` with the account's keys; the non-zero totals.

    ``ccxt_config`` adds ccxt constructor options (timeout, proxies, urls). First the exchange
    is asked what the key may do: one that may withdraw is deactivated and refused, other
    findings come as a ``KeyWarning``. Failures raise a ``VaultError`` that says what went
    wrong (authentication, permissions, network) and never contains a key.
    """
    vault = backend()
    balances = vault.check(account_id, ccxt_config)
    _warn_about(vault, account_id)
    return balances


def audit(account_id: int | None = None, limit: int = 200) -> pd.DataFrame:
    """Every use of this tenant's decrypted keys, newest first: when, which account, what for,
    which session and run, which process. Read with the tenant's own database role."""
    from workbench.vault._audit import audit as read_audit

    return read_audit(account_id, limit)


def keys_for(account_id: int) -> ExchangeKeys:
    """The decrypted keys of an active account as ``Secret`` objects, for the trading process."""
    return backend().keys_for(account_id)


def _warn_about(vault: VaultBackend, account_id: int) -> None:
    warning = vault.key_warning(account_id)
    if warning:
        warnings.warn(warning, KeyWarning, stacklevel=3)


def __getattr__(name: str) -> Any:
    if name == "LocalVault":  # loads SQLAlchemy and the store on first use, not with the CLI
        from workbench.vault._local import LocalVault

        return LocalVault
    raise AttributeError(f"module 'workbench.vault' has no attribute {name!r}")
