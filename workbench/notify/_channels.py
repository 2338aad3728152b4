"""A tenant's notification channels: added, changed, tested and removed on the trusted side.

Writing a channel seals its secrets with the tenant's data key (``LocalVault.seal``: the
vault's own envelope encryption, bound to the channel's row), so it runs where the master key
is: the notebook's own process in single-user mode (like ``workbench.vault``), the hub's
workbench service for a tenant's server (``admin()``), the workers when they deliver.
Listing reads as the tenant (row-level security), anywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from sqlalchemy import select

from workbench import _plugins as plugins
from workbench import store
from workbench.errors import ChannelNotFound, NotifyError
from workbench.notify import _transport
from workbench.notify._events import DEFAULT_EVENTS, EVENTS, test_message
from workbench.store.models import NotificationChannel, TradingSession
from workbench.vault import Secret

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy.orm import Session

    from workbench.vault import LocalVault

_log = logging.getLogger("workbench.notify")
_SECRETS_FIELD = "secrets"
_MAX_NAME = 80
TEST_TIMEOUT = 10.0
Channel = int | str  # a channel's id or name


def owner_of(channel_id: int) -> str:
    """What a channel's sealed secrets are bound to (never an exchange account id)."""
    return f"notification-channel/{channel_id}"


def open_secrets(vault: LocalVault, db: Session, row: NotificationChannel) -> dict[str, Secret]:
    """The plaintext secrets of a channel, for the one process that sends with them."""
    if row.secret_ct is None:
        return {}
    # sealed secrets have their data key version
    plain = vault.unseal(db, owner_of(row.id), _SECRETS_FIELD, cast(int, row.data_key_version), row.secret_ct)
    return {name: Secret(value) for name, value in json.loads(plain.reveal()).items()}


def redactions(secrets: Mapping[str, Secret]) -> list[str]:
    """Texts to blank out of anything recorded about a channel: its secrets (and the path of a
    secret URL, which may be quoted alone)."""
    found = []
    for secret in secrets.values():
        value = secret.reveal()
        found.append(value)
        if value.startswith(("http://", "https://")):
            parts = urlsplit(value)
            found += [part for part in (parts.path, parts.query) if len(part) >= 8]
    return sorted((v for v in found if v), key=len, reverse=True)


def scrub(text: str, secrets: Mapping[str, Secret]) -> str:
    for value in redactions(secrets):
        text = text.replace(value, "***")
    return text


def admin() -> Admin:
    """Who changes this process's channels: an ``Admin`` here, unless the vault is held by the
    workbench service (a tenant's server in the hub, no master key), then the service does it
    (the ``service`` channel admin the hub registers, with the same methods)."""
    from workbench import vault

    if vault.backend().remote:
        return plugins.load("workbench.channel_admins", "service")()
    return Admin()


class Admin:
    """Changes the channels of one tenant (default: the tenant of ``store.session()``), with
    ``vault`` (default: a ``LocalVault`` of that tenant) sealing their secrets."""

    def __init__(self, tenant: str | None = None, vault: LocalVault | None = None):
        from workbench.vault import LocalVault

        self.vault = vault or LocalVault(tenant)
        self.tenant_id = self.vault.tenant_id

    def add(
        self,
        kind: str,
        name: str,
        settings: Mapping[str, Any],
        events: Iterable[str] | str | None,
        session: int | None,
        rate_limit: int | None,
    ) -> int:
        transport = _transport.get(kind)
        name = _name(name)
        config, secrets = transport.configure(settings)
        with store.owner_session() as db:
            self._refuse_taken(db, name)
            row = NotificationChannel(
                tenant_id=self.tenant_id,
                name=name,
                kind=kind,
                config=config,
                events=_events(events),
                session_id=self._session(db, session),
            )
            if rate_limit is not None:
                row.rate_limit = _rate_limit(rate_limit)
            db.add(row)
            db.flush()  # the id is part of what the secrets are bound to
            if secrets:
                row.data_key_version, row.secret_ct = self.vault.seal(
                    db, owner_of(row.id), _SECRETS_FIELD, Secret(json.dumps(secrets))
                )
            channel_id = row.id
        _log.info("tenant %s added %s channel %s (%s)", self.vault.tenant, kind, channel_id, transport.target(config))
        return channel_id

    def change(self, channel: Channel, **values: Any) -> None:
        """Set ``events``, ``session``, ``enabled`` or ``rate_limit``; enabling clears the failures."""
        with store.owner_session() as db:
            row = self._row(db, channel)
            if "events" in values:
                row.events = _events(values["events"])
            if "session" in values:
                row.session_id = self._session(db, values["session"])
            if "rate_limit" in values:
                row.rate_limit = _rate_limit(values["rate_limit"])
            if "enabled" in values:
                row.enabled = bool(values["enabled"])
                row.disabled_reason = None if row.enabled else "disabled by the user"
                row.failures, row.paused_until = 0, None

    def remove(self, channel: Channel) -> None:
        with store.owner_session() as db:
            db.delete(self._row(db, channel))
        _log.info("tenant %s removed notification channel %s", self.vault.tenant, channel)

    def test(self, channel: Channel, timeout: float = TEST_TIMEOUT) -> str:
        """Send a test message now; where it went, or NotifyError saying why it did not."""
        with store.owner_session() as db:
            row = self._row(db, channel)
            secrets = open_secrets(self.vault, db, row)
        transport = _transport.get(row.kind)
        try:
            transport.send(test_message(row.name), row.config, secrets, timeout)
        except _transport.DeliveryError as exc:
            raise NotifyError(
                f"channel {row.name!r} ({row.kind}): the test message was not delivered: {scrub(str(exc), secrets)}"
            ) from None
        return f"sent a test message to {row.name!r} ({transport.target(row.config)})"

    def _row(self, db: Session, channel: Channel) -> NotificationChannel:
        column = NotificationChannel.id if isinstance(channel, int) else NotificationChannel.name
        row = db.scalar(
            select(NotificationChannel).where(NotificationChannel.tenant_id == self.tenant_id, column == channel)
        )
        if row is None:
            raise ChannelNotFound(f"no notification channel {channel!r}; workbench.notify.channels() lists yours")
        return row

    def _refuse_taken(self, db: Session, name: str) -> None:
        taken = db.scalar(
            select(NotificationChannel.id).where(
                NotificationChannel.tenant_id == self.tenant_id, NotificationChannel.name == name
            )
        )
        if taken is not None:
            raise NotifyError(f"name {name!r} is already used by notification channel {taken}; choose another")

    def _session(self, db: Session, session: int | None) -> int | None:
        if session is None:
            return None
        found = db.scalar(
            select(TradingSession.id).where(
                TradingSession.tenant_id == self.tenant_id, TradingSession.id == int(session)
            )
        )
        if found is None:
            raise NotifyError(
                f"no trading session #{session}; workbench.live.sessions() lists yours (session=None: every session)"
            )
        return found


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise NotifyError("a channel needs a name, e.g. 'phone' or 'ops webhook'")
    if len(name.strip()) > _MAX_NAME:
        raise NotifyError(f"channel name {name[:20]!r}... is longer than {_MAX_NAME} characters")
    return name.strip()


def _events(events: Iterable[str] | str | None) -> list[str]:
    if events is None:
        return list(DEFAULT_EVENTS)
    chosen = list(EVENTS) if events == "all" else [events] if isinstance(events, str) else list(events)
    unknown = [kind for kind in chosen if kind not in EVENTS]
    if unknown:
        raise NotifyError(f"no event kind {unknown[0]!r}; the kinds are {', '.join(EVENTS)} (or 'all')")
    if not chosen:
        raise NotifyError("a channel must want at least one event kind; disable() it to silence it")
    return list(dict.fromkeys(chosen))


def _rate_limit(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NotifyError(f"rate_limit {value!r} must be a whole number of messages per minute, at least 1")
    return value


def listing(db: Session) -> pd.DataFrame:
    """The channels ``db`` sees, one row each: where they send (no secret), what they want, state."""
    import pandas as pd

    rows = db.scalars(select(NotificationChannel).order_by(NotificationChannel.id)).all()
    known = _transport.transports()
    table = [
        {
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "target": known[r.kind].target(r.config) if r.kind in known else "?",
            "events": ", ".join(r.events),
            "session": "all" if r.session_id is None else f"#{r.session_id}",
            "enabled": r.enabled,
            "state": _state(r),
            "failures": r.failures,
            "rate_limit": r.rate_limit,
            "created_at": r.created_at,
        }
        for r in rows
    ]
    columns = [
        "id",
        "name",
        "kind",
        "target",
        "events",
        "session",
        "enabled",
        "state",
        "failures",
        "rate_limit",
        "created_at",
    ]
    return pd.DataFrame(table, columns=columns).set_index("id")


def _state(row: NotificationChannel) -> str:
    if not row.enabled:
        return row.disabled_reason or "disabled"
    if row.paused_until is not None:
        return f"rate-limited until {row.paused_until:%Y-%m-%d %H:%M:%S} UTC (or passed)"
    return "ok"
