"""What an exchange key may do, asked of the exchange when a key is added or checked.

Hosted bots have lost keys in bulk (a large platform leaked ~100k in 2022), and a stolen key
that may withdraw empties the account. So the vault asks the exchange and:

- refuses a key that may withdraw, unless the operator allows such keys
  (``WORKBENCH_ALLOW_WITHDRAWAL_KEYS=1``);
- warns when the key is not restricted to IP addresses, naming the addresses the workbench
  talks to the exchange from (``WORKBENCH_EGRESS_IPS``, comma-separated, set by the operator),
  since an IP-restricted key is useless to whoever steals it.

Binance reports a key's restrictions at ``GET /sapi/v1/account/apiRestrictions`` (ccxt's implicit
``sapiGetAccountApiRestrictions``; https://developers.binance.com/docs/wallet/account/api-key-permission).
Gate lists the main account's keys with their permissions and IP whitelist at
``GET /account/main_keys`` (``privateAccountGetMainKeys``; Gate APIv4 "Query All Main Account Key
Information"), each key shown as its first characters then ``*****``; a key without the
``account`` permission gets ``403 FORBIDDEN`` there, and then only a probe is left: cancelling
a withdrawal that does not exist (``DELETE /withdrawals/{id}``) is refused with ``READ_ONLY`` or
``FORBIDDEN`` when the key may not withdraw, and answers anything else (not found) when it may.
Other exchanges cannot be asked; their keys get a warning to check by hand.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import VaultError

if TYPE_CHECKING:  # pragma: no cover
    import ccxt

    from workbench.vault._exchange import ExchangeKeys

ALLOW_WITHDRAWALS_ENV = "WORKBENCH_ALLOW_WITHDRAWAL_KEYS"
EGRESS_IPS_ENV = "WORKBENCH_EGRESS_IPS"
# a withdrawal id no real withdrawal has: the probe must never cancel anything
_PROBE_WITHDRAWAL_ID = "0"
# Binance's apiRestrictions flags, as abilities (tradingAuthorityExpirationTime is a time, kept aside)
_BINANCE_FLAGS = {
    "enableReading": "read",
    "enableSpotAndMarginTrading": "spot and margin trading",
    "enableFutures": "futures",
    "enableMargin": "margin",
    "enableVanillaOptions": "options",
    "enableWithdrawals": "withdrawals",
    "enableInternalTransfer": "internal transfers",
    "permitsUniversalTransfer": "universal transfers",
}
_TRADING = {
    "spot and margin trading",
    "futures",
    "margin",
    "options",
    "spot",
    "delivery",
    "unified",
}  # the last three: Gate's permission names


@dataclass(frozen=True)
class KeyReview:
    """What the exchange said about a key. ``None``: it could not tell (``unknown`` says why)."""

    can_withdraw: bool | None
    ip_restricted: bool | None
    abilities: dict[str, bool] = field(default_factory=dict)
    ip_whitelist: tuple[str, ...] = ()
    unknown: str = ""

    def warnings(self, exchange: str, key_hint: str, permissions: str) -> list[str]:
        """One line per thing the tenant should fix (empty: nothing to fix)."""
        what = f"{exchange} key {key_hint}"
        if self.unknown:
            return [
                f"{what}: could not ask the exchange what it may do ({self.unknown}); make sure on the "
                f"exchange that it cannot withdraw and is restricted to the workbench's IP addresses"
            ]
        found = []
        egress = egress_ips()
        whitelist = (
            f"whitelist {', '.join(egress)} for it on the exchange"
            if egress
            else f"whitelist the workbench's egress addresses for it (the operator lists them in {EGRESS_IPS_ENV})"
        )
        if self.ip_restricted is False:
            found.append(f"{what} is not restricted to IP addresses: {whitelist}")
        elif self.ip_restricted is None:
            found.append(f"{what}: the exchange did not say whether it is restricted to IP addresses; {whitelist}")
        elif self.ip_whitelist and egress and set(egress) - set(self.ip_whitelist):
            missing = ", ".join(ip for ip in egress if ip not in self.ip_whitelist)
            found.append(f"{what} is restricted to IP addresses that lack {missing}: add them on the exchange")
        if permissions == "trade" and not _TRADING & {name for name, allowed in self.abilities.items() if allowed}:
            found.append(f"{what} may not trade, but the account is for trading: enable trading for it on the exchange")
        return found


def egress_ips() -> list[str]:
    """The operator's egress addresses (``WORKBENCH_EGRESS_IPS``), each checked."""
    text = os.environ.get(EGRESS_IPS_ENV, "")
    addresses = [part.strip() for part in text.split(",") if part.strip()]
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise VaultError(
                f"{EGRESS_IPS_ENV} lists {address!r}, which is not an IP address; "
                "list the workbench's egress addresses, comma-separated"
            ) from None
    return addresses


def withdrawal_keys_allowed() -> bool:
    """True when the operator set ``WORKBENCH_ALLOW_WITHDRAWAL_KEYS=1``."""
    value = os.environ.get(ALLOW_WITHDRAWALS_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise VaultError(f"{ALLOW_WITHDRAWALS_ENV}={value!r}: set it to 1 (allow) or 0 (refuse, the default)")
    return value == "1"


def refusal(review: KeyReview, exchange: str, key_hint: str) -> str:
    """Why the key is refused ('' when it is not): it may withdraw and the operator does not allow that."""
    if review.can_withdraw and not withdrawal_keys_allowed():
        return (
            f"{exchange} key {key_hint} may withdraw funds, which the workbench refuses "
            f"(turn withdrawals off for it on the exchange)"
        )
    return ""


def review_key(keys: ExchangeKeys, config: Mapping[str, Any] | None = None) -> KeyReview:
    """Ask the exchange what ``keys`` may do. Never raises for the exchange's answer: a failure
    is a review whose ``unknown`` says what went wrong (without the key)."""
    import ccxt

    from workbench.vault._exchange import _scrub, client

    egress_ips(), withdrawal_keys_allowed()  # a bad operator setting stops here, before the exchange is asked
    inspect = _INSPECTORS.get(keys.exchange)
    if inspect is None:
        return KeyReview(None, None, unknown=f"the workbench does not know how to ask {keys.exchange}")
    try:
        return inspect(client(keys, config), keys)
    except ccxt.BaseError as exc:  # the request's query (timestamp, signature) says nothing useful
        return KeyReview(None, None, unknown=re.sub(r"\?\S*", "", _scrub(exc, keys))[:300])


def _binance(exchange: ccxt.Exchange, keys: ExchangeKeys) -> KeyReview:
    # GET /sapi/v1/account/apiRestrictions: {"ipRestrict": false, "enableWithdrawals": false, ...}
    answer = exchange.sapiGetAccountApiRestrictions()
    abilities = {name: bool(answer.get(flag)) for flag, name in _BINANCE_FLAGS.items()}
    return KeyReview(bool(answer.get("enableWithdrawals")), bool(answer.get("ipRestrict")), abilities)


def _gate(exchange: ccxt.Exchange, keys: ExchangeKeys) -> KeyReview:
    import ccxt

    try:
        listed = exchange.privateAccountGetMainKeys()
    except ccxt.PermissionDenied:  # 403 FORBIDDEN: the key lacks the "account" permission
        return _gate_probe(exchange)
    entries = listed if isinstance(listed, list) else [listed]
    entry = next((e for e in entries if _gate_key_matches(str(e.get("key", "")), keys.api_key.reveal())), None)
    if entry is None:
        return KeyReview(None, None, unknown="gate did not list this key among the account's keys")
    # perms: [{"name": "wallet", "read_only": false}, ...]; withdrawals need the wallet permission, writable
    perms = entry.get("perms") or []
    writable = {str(p.get("name")) for p in perms if not p.get("read_only")}
    abilities = {"read": bool(perms)} | {str(p.get("name")): str(p.get("name")) in writable for p in perms}
    whitelist = tuple(str(ip) for ip in entry.get("ip_whitelist") or [])
    return KeyReview("wallet" in writable, bool(whitelist), abilities, whitelist)


def _gate_key_matches(listed: str, api_key: str) -> bool:
    """Gate lists keys masked (``c5dcfbf1f3a7*****``): the shown characters must start the key."""
    shown = listed.rstrip("*")
    return bool(shown) and "*" not in shown and api_key.startswith(shown)


def _gate_probe(exchange: ccxt.Exchange) -> KeyReview:
    import ccxt

    try:
        exchange.privateWithdrawalsDeleteWithdrawalsWithdrawalId({"withdrawal_id": _PROBE_WITHDRAWAL_ID})
    except ccxt.PermissionDenied:  # READ_ONLY / FORBIDDEN: no writable wallet permission
        return KeyReview(False, None)
    except ccxt.AuthenticationError:  # a wrong key says nothing about permissions
        raise
    except ccxt.ExchangeError:  # e.g. not found: the key got past the permission check
        return KeyReview(True, None)
    return KeyReview(True, None)


_INSPECTORS = {"binance": _binance, "gate": _gate}


def describe(review: KeyReview) -> dict[str, Any]:
    """The review as stored in ``exchange_key_reviews.abilities`` (JSON)."""
    return {**review.abilities, **({"ip_whitelist": list(review.ip_whitelist)} if review.ip_whitelist else {})}
