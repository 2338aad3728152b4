"""The key vault: a tenant's exchange API keys, AES-256-GCM encrypted at rest.

From a notebook::

    import workbench as wb

    wb.vault.form()                                  # password fields; nothing typed into code
    account = wb.vault.add_account("binance", api_key, secret, permissions="read", label="main")
    wb.vault.accounts()                              # keys masked: ab12…9f
    wb.vault.check(account)                          # fetch_balance through ccxt, or a clear VaultError
    wb.vault.deactivate(account); wb.vault.remove(account)

``keys_for(account)`` gives the trading process its keys as ``Secret`` objects, which
print masked. The helpers use ``backend()``: a ``LocalVault`` (this process holds the
master key) unless another ``VaultBackend`` was installed with ``use``. How keys are
stored: ``_envelope`` (ciphertext format), ``_keyring`` (master key), ``_rotate``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workbench.errors import VaultError
from workbench.vault._backend import Account, VaultBackend, backend, use
from workbench.vault._exchange import ExchangeKeys
from workbench.vault._form import form
from workbench.vault._secret import Secret, mask

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from workbench.vault._local import LocalVault

__all__ = ["Account", "ExchangeKeys", "LocalVault", "Secret", "VaultBackend", "VaultError", "accounts",
           "add_account", "backend", "check", "deactivate", "form", "keys_for", "mask", "remove", "use"]


def add_account(exchange: str, api_key: str | Secret, secret: str | Secret, passphrase: str | Secret | None = None,
                permissions: str = "read", label: str = "") -> int:
    """Encrypt and store an exchange account's keys; its id. ``exchange`` is a ccxt id."""
    return backend().add_account(exchange, Secret(api_key), Secret(secret),
                                 Secret(passphrase) if passphrase else None, permissions, label)


def accounts() -> pd.DataFrame:
    """The tenant's exchange accounts, one row each, the API key shown only as its hint."""
    import pandas as pd

    columns = ["id", "exchange", "label", "permissions", "is_active", "key_hint", "created_at"]
    return pd.DataFrame([vars(a) for a in backend().accounts()], columns=columns).set_index("id")


def deactivate(account_id: int) -> None:
    """Keep the account listed but refuse its keys to live runs."""
    backend().deactivate(account_id)


def remove(account_id: int) -> None:
    """Delete the account and its encrypted keys."""
    backend().remove(account_id)


def check(account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Call the exchange's ``fetch_balance`` with the account's keys; the non-zero totals.

    ``ccxt_config`` adds ccxt constructor options (timeout, proxies, urls). Failures raise a
    ``VaultError`` that says what went wrong (authentication, permissions, network) and
    never contains a key.
    """
    return backend().check(account_id, ccxt_config)


def keys_for(account_id: int) -> ExchangeKeys:
    """The decrypted keys of an active account as ``Secret`` objects, for the trading process."""
    return backend().keys_for(account_id)



def __getattr__(name: str) -> Any:
    if name == "LocalVault":  # loads SQLAlchemy and the store on first use, not with the CLI
        from workbench.vault._local import LocalVault

        return LocalVault
    raise AttributeError(f"module 'workbench.vault' has no attribute {name!r}")
