"""Delivery: the workers send what the outbox holds, and keep trading out of it.

Each worker's dispatcher loop (``workbench worker``) calls ``defer_delivery`` every pass: when
a delivery is due it queues the procrastinate task ``workbench:deliver_notifications`` (at
most one waits, below the runs in priority), and whichever worker takes it runs ``deliver``:
one pass, on the trusted side (owner connection; the master key opens the channels' secrets).
Only one pass runs at a time anywhere (an advisory lock); a pass starts no send after
``Policy.budget`` seconds, and each send has ``Policy.timeout``, so a slow channel delays
notifications, never a run. Ticks only ever insert rows.

Per channel, in its own thread: at most ``rate_limit`` attempts a minute (the rest wait for
the window); a failed attempt is retried after ``backoff`` seconds, doubling up to
``max_backoff``, or after the ``retry_after`` the far end asked for (which pauses the whole
channel and does not count against it); a permanent failure, or ``max_attempts`` attempts,
fails the delivery with its reason. ``disable_after`` failed attempts in a row disable the
channel: its pending deliveries are skipped and the tenant's other channels get a
``channel.disabled`` notice. A pass that dies mid-send leaves the delivery pending, so a
message may (rarely) arrive twice; webhooks carry a stable ``X-Workbench-Delivery`` for that.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import procrastinate
from sqlalchemy import and_, delete, exists, func, or_, select, update

from workbench import store
from workbench.errors import NotifyError, VaultError
from workbench.jobs import NAMESPACE, QUEUE, blueprint
from workbench.notify import _transport
from workbench.notify._channels import open_secrets, scrub
from workbench.notify._events import render
from workbench.notify._outbox import emit
from workbench.store.models import NotificationChannel, NotificationDelivery, NotificationEvent, Tenant

_log = logging.getLogger("workbench.notify")
_LOCK = 0x77626E74  # "wbnt": one delivery pass at a time
TASK = "deliver_notifications"
_WINDOW = timedelta(minutes=1)  # the rate limit's window


@dataclass(frozen=True)
class Policy:
    """How the workers deliver; the defaults suit production."""

    timeout: float = 10.0  # seconds one send may take
    max_attempts: int = 8  # then the delivery fails
    backoff: float = 5.0  # seconds before the first retry, doubling
    max_backoff: float = 900.0
    disable_after: int = 10  # failed attempts in a row that disable a channel
    batch: int = 500  # deliveries a pass reads
    budget: float = 20.0  # seconds a pass starts sends in
    threads: int = 4  # channels served at once
    keep_days: int = 30  # delivered events are forgotten after this


@dataclass
class PassReport:
    """What one pass did."""

    sent: int = 0
    retried: int = 0  # failed attempts that will be tried again
    failed: int = 0  # deliveries given up
    postponed: int = 0  # held back by a rate limit
    disabled: list[str] = field(default_factory=list)  # channels disabled by this pass
    busy: bool = False  # another pass was running: this one did nothing

    def add(self, other: PassReport) -> None:
        self.sent, self.retried = self.sent + other.sent, self.retried + other.retried
        self.failed, self.postponed = self.failed + other.failed, self.postponed + other.postponed
        self.disabled += other.disabled


def deliver(policy: Policy = Policy(), now: datetime | None = None) -> PassReport:
    """One delivery pass (trusted side). ``now``: the time to act at (tests move the clock)."""
    started, ticking = now or datetime.now(UTC), time.monotonic()

    def clock() -> datetime:
        return started + timedelta(seconds=time.monotonic() - ticking)

    with _exclusive() as mine:
        if not mine:
            return PassReport(busy=True)
        with store.owner_session() as db:
            rows = db.execute(
                _due(
                    select(
                        NotificationDelivery.id,
                        NotificationDelivery.channel_id,
                        NotificationDelivery.attempts,
                        NotificationEvent.id.label("event_id"),
                        NotificationEvent.kind,
                        NotificationEvent.session_id,
                        NotificationEvent.data,
                        NotificationEvent.created_at,
                    ),
                    clock(),
                )
                .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
                .limit(policy.batch)
            ).all()
        by_channel: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_channel[row.channel_id].append(row)
        report = PassReport()
        deadline = ticking + policy.budget
        with ThreadPoolExecutor(max_workers=max(1, min(policy.threads, len(by_channel)))) as pool:
            for part in pool.map(lambda item: _serve(item[0], item[1], policy, clock, deadline), by_channel.items()):
                report.add(part)
        _forget(clock() - timedelta(days=policy.keep_days))
    if rows:
        _log.info(
            "notifications: %s sent, %s to retry, %s failed, %s held by rate limits%s",
            report.sent,
            report.retried,
            report.failed,
            report.postponed,
            f", disabled {report.disabled}" if report.disabled else "",
        )
    return report


def has_due(now: datetime | None = None) -> bool:
    """Whether a delivery is due (the dispatcher's cheap question)."""
    with store.owner_session() as db:
        return bool(db.scalar(select(exists(_due(select(NotificationDelivery.id), now or datetime.now(UTC))))))


@blueprint.task(name=TASK, queue=QUEUE, queueing_lock="notifications", priority=-1)
async def deliver_notifications() -> None:
    """A delivery pass in a thread, so the worker's event loop keeps beating."""
    await asyncio.to_thread(deliver)


async def defer_delivery(app: procrastinate.App) -> bool:
    """Queue a delivery pass when something is due (none if one is waiting already)."""
    if not await asyncio.to_thread(has_due):
        return False
    try:
        await app.configure_task(
            f"{NAMESPACE}:{TASK}", queue=QUEUE, queueing_lock="notifications", priority=-1
        ).defer_async()
    except procrastinate.exceptions.AlreadyEnqueued:
        pass
    return True


def _due(query: Any, now: datetime) -> Any:
    """``query`` over the deliveries due at ``now``: pending, their time come, channel enabled and
    not paused, tenant not removed."""
    return (
        query.select_from(NotificationDelivery)
        .join(
            NotificationEvent,
            and_(
                NotificationEvent.tenant_id == NotificationDelivery.tenant_id,
                NotificationEvent.id == NotificationDelivery.event_id,
            ),
        )
        .join(
            NotificationChannel,
            and_(
                NotificationChannel.tenant_id == NotificationDelivery.tenant_id,
                NotificationChannel.id == NotificationDelivery.channel_id,
            ),
        )
        .join(Tenant, Tenant.id == NotificationDelivery.tenant_id)
        .where(
            NotificationDelivery.status == "pending",
            NotificationDelivery.next_attempt_at <= now,
            NotificationChannel.enabled,
            or_(NotificationChannel.paused_until.is_(None), NotificationChannel.paused_until <= now),
            Tenant.removed_at.is_(None),
        )
    )


@contextmanager
def _exclusive() -> Iterator[bool]:
    """Hold the delivery lock for the block on a connection of its own (released if we die)."""
    with store.owner_engine().connect() as connection:
        mine = bool(connection.scalar(select(func.pg_try_advisory_lock(_LOCK))))
        connection.commit()
        try:
            yield mine
        finally:
            if mine:
                connection.scalar(select(func.pg_advisory_unlock(_LOCK)))
                connection.commit()


def _serve(
    channel_id: int, rows: list[Any], policy: Policy, clock: Callable[[], datetime], deadline: float
) -> PassReport:
    """Send one channel's due deliveries, in order, as its rate limit allows."""
    from workbench.vault import LocalVault

    report = PassReport()
    now = clock()
    with store.owner_session() as db:
        channel = db.get(NotificationChannel, channel_id)
        if channel is None:  # removed since the pass read its deliveries (they went with it)
            return report
        tenant = cast(Tenant, db.get(Tenant, channel.tenant_id))  # the channel's tenant
        sent_lately = cast(
            int,
            db.scalar(
                select(func.count()).where(
                    NotificationDelivery.channel_id == channel_id, NotificationDelivery.last_attempt_at > now - _WINDOW
                )
            ),
        )
        broken: _transport.DeliveryError | None = None
        secrets = {}
        try:
            transport = _transport.get(channel.kind)
            secrets = open_secrets(LocalVault(tenant=tenant.name), db, channel)
        except (VaultError, NotifyError) as exc:
            broken = _transport.DeliveryError(f"the channel cannot be used: {exc}", permanent=True)
    allowed = channel.rate_limit - sent_lately
    for number, row in enumerate(rows):
        if number >= allowed:
            report.postponed += _hold(channel_id, [r.id for r in rows[number:]], clock())
            break
        if time.monotonic() > deadline:
            break  # still due: the next pass takes them
        message = render(
            row.kind, row.data, event_id=row.event_id, session_id=row.session_id, created_at=row.created_at
        )
        try:
            if broken is not None:
                raise broken
            try:
                transport.send(message, channel.config, secrets, policy.timeout)
            except _transport.DeliveryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a transport's bug fails its channel, not the pass
                raise _transport.DeliveryError(
                    f"the {channel.kind} transport failed: {type(exc).__name__}: {exc}"
                ) from None
        except _transport.DeliveryError as exc:
            outcome = _failed(row.id, row.attempts + 1, channel_id, scrub(str(exc), secrets), exc, clock(), policy)
            report.failed += outcome == "failed"
            report.retried += outcome in ("retry", "paused")
            if outcome == "disabled":
                report.disabled.append(channel.name)
            if outcome in ("paused", "disabled"):
                break
        else:
            _sent(row.id, channel_id, clock())
            report.sent += 1
    return report


def _sent(delivery_id: int, channel_id: int, at: datetime) -> None:
    with store.owner_session() as db:
        db.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(
                status="sent", attempts=NotificationDelivery.attempts + 1, sent_at=at, last_attempt_at=at, error=None
            )
        )
        db.execute(
            update(NotificationChannel)
            .where(NotificationChannel.id == channel_id)
            .values(failures=0, paused_until=None)
        )


def _failed(
    delivery_id: int,
    attempts: int,
    channel_id: int,
    error: str,
    exc: _transport.DeliveryError,
    at: datetime,
    policy: Policy,
) -> str:
    """Record a failed attempt; "retry", "failed", "paused" (the far end asked for a pause) or
    "disabled" (the channel failed once too often)."""
    final = exc.permanent or attempts >= policy.max_attempts
    wait = (
        exc.retry_after
        if exc.retry_after is not None
        else min(policy.max_backoff, policy.backoff * 2 ** (attempts - 1))
    )
    with store.owner_session() as db:
        db.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(
                status="failed" if final else "pending",
                attempts=attempts,
                last_attempt_at=at,
                error=error[:1000],
                next_attempt_at=at + timedelta(seconds=wait),
            )
        )
        # the delivery just updated is the channel's (deleted with it)
        channel = cast(NotificationChannel, db.get(NotificationChannel, channel_id, with_for_update=True))
        if exc.retry_after is not None and not final:  # a rate limit: not the channel's fault
            channel.paused_until = at + timedelta(seconds=wait)
            return "paused"
        channel.failures += 1
        if channel.failures >= policy.disable_after:
            _disable(db, channel, f"disabled after {channel.failures} failed attempts in a row; last error: {error}")
            return "disabled"
    return "failed" if final else "retry"


def _disable(db: Any, channel: NotificationChannel, reason: str) -> None:
    """Disable ``channel``, skip what it still had to send, and tell the tenant's other channels."""
    channel.enabled, channel.disabled_reason = False, reason[:1000]
    db.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.channel_id == channel.id, NotificationDelivery.status == "pending")
        .values(status="skipped", error="the channel was disabled")
    )
    db.flush()
    emit(
        db,
        channel.tenant_id,
        None,
        "channel.disabled",
        f"channel.disabled:{channel.id}:{uuid.uuid4()}",
        {"channel": channel.name, "kind": channel.kind, "reason": channel.disabled_reason},
    )
    _log.warning("notification channel %s (%r of tenant %s) %s", channel.id, channel.name, channel.tenant_id, reason)


def _hold(channel_id: int, delivery_ids: list[int], now: datetime) -> int:
    """Postpone deliveries over the rate limit until the window has room again."""
    with store.owner_session() as db:
        oldest = db.scalar(
            select(func.min(NotificationDelivery.last_attempt_at)).where(
                NotificationDelivery.channel_id == channel_id, NotificationDelivery.last_attempt_at > now - _WINDOW
            )
        )
        db.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id.in_(delivery_ids))
            .values(next_attempt_at=(oldest or now) + _WINDOW)
        )
    return len(delivery_ids)


def _forget(before: datetime) -> None:
    """Drop events older than ``before`` that have nothing pending."""
    with store.owner_session() as db:
        pending = select(NotificationDelivery.id).where(
            NotificationDelivery.event_id == NotificationEvent.id, NotificationDelivery.status == "pending"
        )
        db.execute(delete(NotificationEvent).where(NotificationEvent.created_at < before, ~exists(pending)))
