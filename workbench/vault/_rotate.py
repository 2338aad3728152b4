"""Master-key rotation and status (``workbench vault rotate`` / ``workbench vault status``), and
the rotation of one tenant's data key (``workbench vault rotate --tenant NAME``, at the end).

Rotation re-wraps each tenant's data key (one short row) under a new master key; the data
keys themselves, and so every account ciphertext, stay the same. Three steps, each safe
to kill at any point:

1. Unless a rotation is already unfinished, add a new random master key version to the
   keyring file (atomic replace). Processes that meet the new version reload the file.
2. Re-wrap the data keys still under older versions to the current one, one tenant per
   transaction (rows locked ``FOR UPDATE``). Unfinished rows stay readable with the old
   version, which is still in the keyring.
3. Holding the data-key lock exclusively (so no data key is being wrapped under an old
   version at that moment), check that no row uses an old version and only then drop
   those versions from the keyring file.

After a crash every row is wrapped under a version the keyring still holds, and running
``rotate`` again finishes the job instead of starting another rotation.

Test hook: ``WORKBENCH_VAULT_ROTATE_PAUSE_AFTER=N`` makes step 2 stop after N tenants,
print ``paused after N tenants`` on stderr and sleep, so a test can kill it mid-way (a
tenant's data key rotation: after N re-encrypted accounts).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import func, select, text

from workbench import store
from workbench.errors import VaultError
from workbench.store.models import ExchangeAccount, NotificationChannel, Tenant, TenantDataKey
from workbench.vault import _envelope, _keyring
from workbench.vault._audit import record, this_process
from workbench.vault._backend import KeyUse
from workbench.vault._local import _FIELDS, DATA_KEY_LOCK, LocalVault, unwrap, wrap

PAUSE_ENV = "WORKBENCH_VAULT_ROTATE_PAUSE_AFTER"
_ROTATE_LOCK = DATA_KEY_LOCK + 1


@dataclass(frozen=True)
class VaultStatus:
    """Which master and data key versions are in use."""

    keyring_source: str
    keyring_versions: list[int]
    current: int
    data_keys_by_master_version: dict[int, int]
    accounts_by_data_key_version: dict[int, int]

    @property
    def unfinished(self) -> bool:
        """True while a rotation has rows or keyring versions left to move off."""
        return set(self.keyring_versions) != {self.current} or bool(
            set(self.data_keys_by_master_version) - {self.current}
        )

    def lines(self) -> list[str]:
        versions = ", ".join(f"{v} (current)" if v == self.current else str(v) for v in self.keyring_versions)
        out = [f"master keyring: {self.keyring_source}", f"master key versions in the keyring: {versions}"]
        for version in sorted({*self.keyring_versions, *self.data_keys_by_master_version}):
            count = self.data_keys_by_master_version.get(version, 0)
            out.append(f"master key version {version}: wraps {count} tenant data key(s)")
        for version, count in sorted(self.accounts_by_data_key_version.items()):
            out.append(f"data key version {version}: encrypts {count} exchange account(s)")
        out.append(
            "rotation: unfinished, run `workbench vault rotate` to finish it"
            if self.unfinished
            else "rotation: none in progress"
        )
        return out


def status(keyring: _keyring.Keyring | None = None) -> VaultStatus:
    """The key versions in the keyring and in the database."""
    keyring = keyring or _keyring.load()
    with store.owner_session() as session:
        by_master = dict(
            session.execute(
                select(TenantDataKey.master_key_version, func.count()).group_by(TenantDataKey.master_key_version)
            ).all()
        )
        by_data_key = dict(
            session.execute(
                select(ExchangeAccount.data_key_version, func.count()).group_by(ExchangeAccount.data_key_version)
            ).all()
        )
    return VaultStatus(keyring.source, sorted(keyring.keys), keyring.current, by_master, by_data_key)


def rotate(report: Callable[[str], None] = print) -> VaultStatus:
    """Re-wrap every tenant data key under a new master key version, then retire the old ones."""
    with store.owner_session() as guard:
        if not guard.scalar(select(func.pg_try_advisory_xact_lock(_ROTATE_LOCK))):
            raise VaultError("another `workbench vault rotate` is running; wait for it to finish")
        keyring = _keyring.load()
        if status(keyring).unfinished:
            report(f"finishing an unfinished rotation to master key version {keyring.current}")
        else:
            keyring = keyring.with_new_version()
            _keyring.write(keyring)
            report(f"added master key version {keyring.current} to {keyring.source}")
        while _rewrap_pending(keyring, report) or not _retire(keyring, report):
            pass  # a data key wrapped under an old version appeared meanwhile: go again
    return status(_keyring.load())


def _rewrap_pending(keyring: _keyring.Keyring, report: Callable[[str], None]) -> int:
    """Step 2: re-wrap tenant by tenant; the number of tenants done."""
    pause_after = int(os.environ.get(PAUSE_ENV) or 0)
    with store.owner_session() as session:
        tenants = session.execute(
            select(Tenant.id, Tenant.name)
            .join(TenantDataKey)
            .where(TenantDataKey.master_key_version != keyring.current)
            .distinct()
            .order_by(Tenant.id)
        ).all()
    for done, (tenant_id, tenant_name) in enumerate(tenants, 1):
        with store.owner_session() as session:
            rows = session.scalars(
                select(TenantDataKey)
                .where(TenantDataKey.tenant_id == tenant_id, TenantDataKey.master_key_version != keyring.current)
                .with_for_update()
            ).all()
            for row in rows:
                data_key = unwrap(keyring, row, f"data key version {row.version} of tenant {tenant_name!r}")
                row.wrapped_key = wrap(keyring, keyring.current, tenant_id, row.version, data_key)
                row.master_key_version = keyring.current
        report(f"re-wrapped the data key(s) of tenant {tenant_name!r} ({done}/{len(tenants)})")
        if done == pause_after:
            print(f"paused after {done} tenants ({PAUSE_ENV})", file=sys.stderr, flush=True)
            time.sleep(3600)
    return len(tenants)


def _retire(keyring: _keyring.Keyring, report: Callable[[str], None]) -> bool:
    """Step 3: drop unused old versions from the keyring; False if a row still uses one."""
    old = set(keyring.keys) - {keyring.current}
    with store.owner_session() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": DATA_KEY_LOCK})
        in_use = set(session.scalars(select(TenantDataKey.master_key_version).distinct()).all())
        if in_use & old:
            return False
        if old and keyring.path is None:
            report(f"master key versions {sorted(old)} are no longer used: remove them from {keyring.source}")
        elif old:
            _keyring.write(keyring.without(old))
            report(f"retired master key version(s) {sorted(old)} from {keyring.source}")
    return True


# --- one tenant's data key ----------------------------------------------------------------------

# what else a tenant's data key seals, besides exchange accounts: notification channels' secrets,
# bound to the owner and field that ``workbench.notify`` seals them with (``LocalVault.seal``)
_CHANNEL_OWNER = "notification-channel/{}"
_CHANNEL_FIELD = "secrets"


def rotate_data_key(tenant: str, report: Callable[[str], None] = print) -> int:
    """Give ``tenant`` a new random data key, re-encrypt every ciphertext it seals (exchange
    account fields, notification channel secrets) and delete the old data key; the new version.

    One transaction: interrupted at any point, nothing changed and the old key still opens
    everything; running it again rotates. Each re-encrypted account is a use of its key, so
    it is recorded in the key audit log.
    """
    vault = LocalVault(tenant, actor=f"workbench vault rotate --tenant ({this_process()})")
    pause_after = int(os.environ.get(PAUSE_ENV) or 0)
    with store.owner_session() as session:
        # shared: a master key rotation may not retire the version the new key is wrapped under
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:lock)"), {"lock": DATA_KEY_LOCK})
        old = session.scalars(
            select(TenantDataKey).where(TenantDataKey.tenant_id == vault.tenant_id).with_for_update()
        ).all()
        if not old:
            raise VaultError(f"tenant {tenant!r} has no data key yet (it gets one with its first exchange account)")
        version, data_key = max(row.version for row in old) + 1, os.urandom(_envelope.KEY_SIZE)
        keyring = _keyring.load()
        session.add(
            TenantDataKey(
                tenant_id=vault.tenant_id,
                version=version,
                master_key_version=keyring.current,
                wrapped_key=wrap(keyring, keyring.current, vault.tenant_id, version, data_key),
            )
        )
        session.flush()
        accounts = session.scalars(
            select(ExchangeAccount)
            .where(ExchangeAccount.tenant_id == vault.tenant_id)
            .order_by(ExchangeAccount.id)
            .with_for_update()
        ).all()
        row: ExchangeAccount | TenantDataKey  # the accounts re-encrypted, then the old data keys deleted
        for done, row in enumerate(accounts, 1):
            keys = vault.open_account(session, row)
            for field in _FIELDS:
                secret = getattr(keys, field)
                if secret:
                    context = _envelope.field_context(vault.tenant_id, row.id, field)
                    setattr(row, f"{field}_ct", _envelope.seal(data_key, version, secret.reveal().encode(), context))
            row.data_key_version = version
            record(
                session,
                vault.tenant_id,
                row.id,
                row.exchange,
                row.key_hint,
                KeyUse(f"re-encrypted under data key version {version}"),
                vault.actor,
            )
            if done == pause_after:
                session.flush()
                print(f"paused after {done} accounts ({PAUSE_ENV})", file=sys.stderr, flush=True)
                time.sleep(3600)
        channels = session.scalars(
            select(NotificationChannel)
            .where(NotificationChannel.tenant_id == vault.tenant_id, NotificationChannel.secret_ct.is_not(None))
            .with_for_update()
        ).all()
        for channel in channels:
            owner = _CHANNEL_OWNER.format(channel.id)
            # a channel with a secret has its data key version
            plain = vault.unseal(
                session, owner, _CHANNEL_FIELD, cast(int, channel.data_key_version), cast(bytes, channel.secret_ct)
            )
            context = _envelope.field_context(vault.tenant_id, owner, _CHANNEL_FIELD)
            channel.secret_ct = _envelope.seal(data_key, version, plain.reveal().encode(), context)
            channel.data_key_version = version
        session.flush()
        for row in old:
            session.delete(row)
    report(
        f"tenant {tenant!r}: data key version {version} now encrypts {len(accounts)} exchange account(s) and "
        f"{len(channels)} notification channel(s); old version(s) {sorted(r.version for r in old)} deleted"
    )
    return version
