"""``LocalVault``: the trusted side of the vault, with the master keyring in this process.

It serves single-user mode (the notebook's own process) and is what the workbench service
runs for hub tenants. It connects as the database owner, because tenants' roles may only
read ``exchange_accounts`` and not touch ``tenant_data_keys`` at all; so every query here
names the tenant explicitly.

Envelope encryption: each tenant has a random AES-256 data key (``tenant_data_keys``),
stored wrapped by the current master key; the account fields are sealed under the data
key (format in ``_envelope``). Rotating the master key then re-wraps one short row per
tenant instead of re-encrypting every account. Unwrapped data keys are cached in memory.

Each decryption of an account's key is recorded in ``key_use_audit`` in the transaction that
read it (``_audit``), and a key is asked about at the exchange when it is added or checked
(``_permissions``): one that may withdraw is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from workbench import store
from workbench.errors import AccountNotFound, VaultError
from workbench.store.models import PERMISSIONS, ExchangeAccount, ExchangeKeyReview, TenantDataKey
from workbench.vault import _envelope, _exchange, _keyring, _permissions
from workbench.vault._audit import record, this_process
from workbench.vault._backend import Account, KeyUse, VaultBackend
from workbench.vault._exchange import ExchangeKeys
from workbench.vault._secret import Secret, mask

_log = logging.getLogger("workbench.vault")

_FIELDS = ("api_key", "secret", "passphrase")
# held shared while a data key is wrapped and stored, exclusively while rotation retires
# master key versions, so no data key is ever wrapped under a version being retired
DATA_KEY_LOCK = 0x77625F76  # "wb_v"


class LocalVault(VaultBackend):
    """The vault of tenant ``tenant`` (default: the tenant of ``store.session()``, in
    single-user mode ``local``). A missing or malformed master key stops it here."""

    def __init__(self, tenant: str | None = None, keyring: _keyring.Keyring | None = None, actor: str | None = None):
        self._keyring = keyring or _keyring.load()
        self.actor = actor or this_process()  # who the audit log says used the keys
        found: store.Tenant | None
        if tenant is None:
            found = store.current_tenant()
        else:
            found = next((t for t in store.list_tenants() if t.name == tenant), None)
            if found is None:
                raise VaultError(f"no active tenant named {tenant!r}; `workbench tenant list` shows them")
        self.tenant, self.tenant_id = found.name, found.id
        self._data_keys: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"LocalVault(tenant={self.tenant!r}, keyring={self._keyring!r})"

    # --- VaultBackend ---------------------------------------------------------------------

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
        """Ask the exchange what the key may do (``ccxt_config``: where it is), refuse it if it may
        withdraw, then encrypt and store it with the exchange's answer."""
        name = _exchange.validate_exchange(exchange, bool(passphrase))
        if permissions not in PERMISSIONS:
            raise VaultError(f"permissions={permissions!r}: choose one of {', '.join(PERMISSIONS)}")
        value: Secret | None  # the key and secret checked here, then each field sealed
        for field, value in (("api_key", api_key), ("secret", secret)):
            if not isinstance(value, Secret) or not value.reveal().strip():
                raise VaultError(f"{field} is empty; paste the {field.replace('_', ' ')} the exchange gave you")
        hint = mask(api_key.reveal())
        label = label or f"{name} {hint}"
        with store.owner_session() as session:
            self._refuse_taken_label(session, label)
        review = _permissions.review_key(ExchangeKeys(None, name, api_key, secret, passphrase), ccxt_config)
        refusal = _permissions.refusal(review, name, hint)
        if refusal:
            raise VaultError(f"{refusal}; it was not stored")
        with store.owner_session() as session:
            self._refuse_taken_label(session, label)
            version, data_key = self._current_data_key(session)
            row = ExchangeAccount(
                tenant_id=self.tenant_id,
                exchange=name,
                label=label,
                permissions=permissions,
                api_key_ct=b"",
                secret_ct=b"",
                key_hint=hint,
                data_key_version=version,
            )
            session.add(row)
            session.flush()  # the id is part of the associated data
            for field, value in zip(_FIELDS, (api_key, secret, passphrase)):
                if value:
                    context = _envelope.field_context(self.tenant_id, row.id, field)
                    setattr(row, f"{field}_ct", _envelope.seal(data_key, version, value.reveal().encode(), context))
            account_id = row.id
            self._store_review(session, row, review)
            record(
                session,
                self.tenant_id,
                account_id,
                name,
                hint,
                KeyUse("add: asked the exchange what it may do"),
                self.actor,
            )
        _log.info("tenant %s added %s account %s (key %s)", self.tenant, name, account_id, hint)
        return account_id

    def accounts(self) -> list[Account]:
        with store.owner_session() as session:
            rows = session.execute(
                select(ExchangeAccount, ExchangeKeyReview)
                .outerjoin(ExchangeKeyReview, ExchangeKeyReview.account_id == ExchangeAccount.id)
                .where(ExchangeAccount.tenant_id == self.tenant_id)
                .order_by(ExchangeAccount.id)
            ).all()
            return [
                Account(
                    r.id,
                    r.exchange,
                    r.label,
                    r.permissions,
                    r.is_active,
                    r.key_hint,
                    r.created_at,
                    *((k.can_withdraw, k.ip_restricted, k.warning) if k else (None, None, "")),
                )
                for r, k in rows
            ]

    def deactivate(self, account_id: int) -> None:
        with store.owner_session() as session:
            self._account(session, account_id).is_active = False
        _log.info("tenant %s deactivated exchange account %s", self.tenant, account_id)

    def remove(self, account_id: int) -> None:
        with store.owner_session() as session:
            session.delete(self._account(session, account_id))
        _log.info("tenant %s removed exchange account %s", self.tenant, account_id)

    def keys_for(self, account_id: int, use: KeyUse | None = None) -> ExchangeKeys:
        """The keys of an active account; ``use`` says what for in the audit log."""
        return self._decrypt(account_id, use or KeyUse("keys_for"), active_only=True)

    def check(self, account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Ask the exchange what the key may do (a key that may withdraw is deactivated and
        refused), then fetch the balance with it."""
        keys = self._decrypt(account_id, KeyUse("check"), active_only=False)
        review = _permissions.review_key(keys, ccxt_config)
        with store.owner_session() as session:
            row = self._account(session, account_id)
            self._store_review(session, row, review)
            refusal = _permissions.refusal(review, row.exchange, row.key_hint)
            if refusal:
                row.is_active = False
        if refusal:
            _log.warning("tenant %s: exchange account %s may withdraw; deactivated", self.tenant, account_id)
            raise VaultError(f"{refusal}; exchange account {account_id} is deactivated")
        return _exchange.check(keys, ccxt_config)

    # --- other secrets of the tenant (e.g. notification channels) ----------------------------

    def seal(self, session: Session, owner: str, field: str, value: Secret) -> tuple[int, bytes]:
        """Encrypt ``value`` under the tenant's current data key, bound to ``owner`` (a name no
        exchange account id can take, e.g. ``notification-channel/7``) and ``field``; the data key
        version and the ciphertext, to store with the row of ``owner``."""
        version, data_key = self._current_data_key(session)
        context = _envelope.field_context(self.tenant_id, owner, field)
        return version, _envelope.seal(data_key, version, value.reveal().encode(), context)

    def unseal(self, session: Session, owner: str, field: str, version: int, blob: bytes) -> Secret:
        """The plaintext that :meth:`seal` encrypted for ``owner`` and ``field``."""
        context = _envelope.field_context(self.tenant_id, owner, field)
        what = f"the {field} of {owner} of tenant {self.tenant!r}"
        return Secret(_envelope.unseal(self._data_key(session, version), version, blob, context, what).decode())

    # --- decryption -------------------------------------------------------------------------

    def _decrypt(self, account_id: int, use: KeyUse, active_only: bool) -> ExchangeKeys:
        with store.owner_session() as session:
            row = self._account(session, account_id)
            if active_only and not row.is_active:
                raise VaultError(f"exchange account {account_id} is deactivated; add its keys again to trade with it")
            keys = self.open_account(session, row)
            record(session, self.tenant_id, row.id, row.exchange, row.key_hint, use, self.actor)
            return keys

    def open_account(self, session: Session, row: ExchangeAccount) -> ExchangeKeys:
        """The plaintext keys of ``row`` (the caller records the use)."""
        data_key = self._data_key(session, row.data_key_version)
        plain = {}
        for field in _FIELDS:
            blob = getattr(row, f"{field}_ct")
            if blob is None:
                continue
            what = f"the {field} of exchange account {row.id}"
            context = _envelope.field_context(self.tenant_id, row.id, field)
            plain[field] = Secret(_envelope.unseal(data_key, row.data_key_version, blob, context, what).decode())
        return ExchangeKeys(row.id, row.exchange, **plain)

    def _store_review(self, session: Session, row: ExchangeAccount, review: _permissions.KeyReview) -> None:
        warning = "; ".join(review.warnings(row.exchange, row.key_hint, row.permissions))
        values = dict(
            can_withdraw=review.can_withdraw,
            ip_restricted=review.ip_restricted,
            abilities=_permissions.describe(review),
            warning=warning,
            reviewed_at=func.now(),
        )
        session.execute(
            insert(ExchangeKeyReview)
            .values(tenant_id=self.tenant_id, account_id=row.id, **values)
            .on_conflict_do_update(index_elements=[ExchangeKeyReview.account_id], set_=values)
        )
        if warning:
            _log.warning("tenant %s, exchange account %s: %s", self.tenant, row.id, warning)

    def _data_key(self, session: Session, version: int) -> bytes:
        if version not in self._data_keys:
            what = f"data key version {version} of tenant {self.tenant!r}"
            row = session.get(TenantDataKey, (self.tenant_id, version))
            if row is None:
                raise VaultError(f"{what} is missing from tenant_data_keys")
            if row.master_key_version not in self._keyring.keys:
                self._keyring = _keyring.load()  # a rotation added a version after this process started
            self._data_keys[version] = unwrap(self._keyring, row, what)
        return self._data_keys[version]

    def _current_data_key(self, session: Session) -> tuple[int, bytes]:
        """The tenant's newest data key, created (version 1) with its first account."""
        version = session.scalar(
            select(func.max(TenantDataKey.version)).where(TenantDataKey.tenant_id == self.tenant_id)
        )
        if version is None:
            session.execute(text("SELECT pg_advisory_xact_lock_shared(:lock)"), {"lock": DATA_KEY_LOCK})
            self._keyring = _keyring.load()  # under the lock: a rotation may just have retired a version
            version, master = 1, self._keyring.current
            wrapped = wrap(self._keyring, master, self.tenant_id, version, os.urandom(_envelope.KEY_SIZE))
            session.execute(
                insert(TenantDataKey)
                .values(
                    tenant_id=self.tenant_id,
                    version=version,
                    wrapped_key=wrapped,
                    master_key_version=master,
                )
                .on_conflict_do_nothing()
            )
        return version, self._data_key(session, version)

    # --- store access -----------------------------------------------------------------------

    def _refuse_taken_label(self, session: Session, label: str) -> None:
        taken = session.scalar(
            select(ExchangeAccount.id).where(
                ExchangeAccount.tenant_id == self.tenant_id, ExchangeAccount.label == label
            )
        )
        if taken is not None:
            raise VaultError(f"label {label!r} is already used by exchange account {taken}; choose another label")

    def _account(self, session: Session, account_id: int) -> Any:
        row = session.get(ExchangeAccount, account_id)
        if row is None or row.tenant_id != self.tenant_id:
            raise AccountNotFound(f"tenant {self.tenant!r} has no exchange account {account_id}")
        return row


def wrap(keyring: _keyring.Keyring, master_version: int, tenant_id: Any, version: int, data_key: bytes) -> bytes:
    """Seal a tenant data key under master key ``master_version``."""
    master = keyring.key(master_version, f"data key version {version} of tenant {tenant_id}")
    return _envelope.seal(master, master_version, data_key, _envelope.data_key_context(tenant_id, version))


def unwrap(keyring: _keyring.Keyring, row: Any, what: str) -> bytes:
    """The plaintext data key of a ``tenant_data_keys`` row."""
    master = keyring.key(row.master_key_version, what)
    context = _envelope.data_key_context(row.tenant_id, row.version)
    return _envelope.unseal(master, row.master_key_version, row.wrapped_key, context, what)
