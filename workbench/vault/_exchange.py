"""ccxt clients built from vault keys, and the connectivity check.

Keys go into the client in memory only. ccxt logs every request's headers (which carry
the API key) at DEBUG, so each client gets a logger that masks its own credentials, and
ccxt's ``verbose`` printing is refused. ccxt error messages may quote the request, so the
check scrubs the keys out of them before they reach a ``VaultError``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import VaultError
from workbench.vault._secret import Secret, mask

if TYPE_CHECKING:  # pragma: no cover
    import ccxt

_log = logging.getLogger("workbench.vault.exchange")
# credentials the vault can hold, as ccxt names them
_STORED_CREDENTIALS = {"apiKey", "secret", "password"}


@dataclass(frozen=True)
class ExchangeKeys:
    """Decrypted credentials of one exchange account, each a masked ``Secret``."""

    account_id: Any
    exchange: str
    api_key: Secret
    secret: Secret
    passphrase: Secret | None = None

    def redactions(self) -> list[tuple[str, str]]:
        """(plaintext, replacement) pairs: the API key shows its hint, the rest nothing."""
        pairs = [(self.api_key.reveal(), mask(self.api_key.reveal()))]
        pairs += [(s.reveal(), "***") for s in (self.secret, self.passphrase) if s]
        return [(plain, shown) for plain, shown in pairs if plain]


def validate_exchange(exchange: str, has_passphrase: bool) -> str:
    """``exchange`` as a ccxt id, checked against ``ccxt.exchanges`` and its credentials."""
    import ccxt

    name = str(exchange).strip().lower()
    if name not in ccxt.exchanges:
        raise VaultError(f"exchange {exchange!r} is not one ccxt supports; see ccxt.exchanges (e.g. 'gate', 'binance')")
    required = {k for k, needed in getattr(ccxt, name)().requiredCredentials.items() if needed}
    if required - _STORED_CREDENTIALS:
        raise VaultError(
            f"exchange {name!r} needs {sorted(required - _STORED_CREDENTIALS)}, which the vault "
            "does not store (it keeps an API key, a secret and a passphrase)"
        )
    if "password" in required and not has_passphrase:
        raise VaultError(f"exchange {name!r} needs a passphrase with its API key; pass passphrase=...")
    return name


def client(keys: ExchangeKeys, config: Mapping[str, Any] | None = None) -> ccxt.Exchange:
    """A ccxt client for ``keys``; ``config`` adds constructor options (timeouts, urls, proxies)."""
    import ccxt

    config = dict(config or {})
    if config.pop("verbose", False):
        raise VaultError("verbose=True would print the account's keys with every request; leave it off")
    credentials = {"apiKey": keys.api_key.reveal(), "secret": keys.secret.reveal()}
    if keys.passphrase:
        credentials["password"] = keys.passphrase.reveal()
    logger = _MaskingLogger(logging.getLogger(f"ccxt.{keys.exchange}"), keys.redactions())
    return getattr(ccxt, keys.exchange)({**config, **credentials, "logger": logger, "verbose": False})


def check(keys: ExchangeKeys, config: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Call ``fetch_balance`` with the account's keys; the non-zero totals, or a clear VaultError."""
    import ccxt

    exchange = client(keys, config)
    what = f"{keys.exchange} account {keys.account_id}"
    try:
        balance = exchange.fetch_balance()
    except ccxt.PermissionDenied as exc:
        raise VaultError(f"{what}: the exchange refused the API key's permissions: {_scrub(exc, keys)}") from None
    except ccxt.AccountSuspended as exc:
        raise VaultError(f"{what}: the exchange says the account is suspended: {_scrub(exc, keys)}") from None
    except ccxt.AuthenticationError as exc:
        raise VaultError(
            f"{what}: authentication failed, the API key or secret is wrong, expired or not "
            f"allowed from this address: {_scrub(exc, keys)}"
        ) from None
    except ccxt.NetworkError as exc:
        raise VaultError(f"{what}: the exchange could not be reached: {_scrub(exc, keys)}") from None
    except ccxt.BaseError as exc:
        raise VaultError(f"{what}: the exchange answered with an error: {_scrub(exc, keys)}") from None
    _log.info("connectivity check of %s passed", what)
    return {currency: amount for currency, amount in (balance.get("total") or {}).items() if amount}


def _scrub(exc: BaseException, keys: ExchangeKeys) -> str:
    return _redact(f"{type(exc).__name__}: {exc}", keys.redactions())


def _redact(text: str, redactions: list[tuple[str, str]]) -> str:
    for plain, shown in redactions:
        text = text.replace(plain, shown)
    return text


class _MaskingLogger(logging.LoggerAdapter):
    """Formats each record first, then masks the client's credentials in the text."""

    def __init__(self, logger: logging.Logger, redactions: list[tuple[str, str]]):
        super().__init__(logger, {})
        self._redactions = redactions

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.setdefault("stacklevel", 2)
            self.logger.log(level, "%s", _redact(text, self._redactions), **kwargs)
