"""The outbox from the Python side: a notebook's own messages, and what was notified.

Events of sessions, orders and runs are written by database triggers (migration 0007) in the
transaction that caused them; ``notification_emit`` is the one way in, for them and for the
``send`` below, and files nothing when no channel wants the event.
"""

from __future__ import annotations

import html
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from workbench import store
from workbench.notify._events import render
from workbench.store.models import NotificationChannel, NotificationDelivery, NotificationEvent

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy.orm import Session

DASHBOARD_ROWS = 10


def emit(db: Session, tenant_id: Any, session_id: int | None, kind: str, key: str, data: dict) -> int | None:
    """File event ``kind`` (once per ``key``) with a delivery per channel that wants it; its id,
    None when no channel wants it or ``key`` was filed before."""
    return db.scalar(select(func.notification_emit(tenant_id, session_id, kind, key, cast(data, JSONB))))


def send(text: str, *, session: int | None = None, key: str | None = None) -> int | None:
    """Tell the channels that want ``message`` events (of ``session``) ``text``; the event id,
    None when no channel wants it or an event with ``key`` was sent before (a notebook that
    may run twice passes a ``key`` to say something once)."""
    with store.session() as db:
        return emit(
            db,
            func.current_tenant_id(),
            session,
            "message",
            key or f"message:{uuid.uuid4()}",
            {"text": str(text)[:4000]},
        )


def recent(db: Session, session: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` events ``db`` sees (of ``session``), newest first, each with its
    deliveries: channel, status, attempts, error."""
    query = select(NotificationEvent).order_by(NotificationEvent.id.desc()).limit(limit)
    if session is not None:
        query = query.where(NotificationEvent.session_id == int(session))
    events = db.scalars(query).all()
    deliveries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if events:
        rows = db.execute(
            select(NotificationDelivery, NotificationChannel.name)
            .join(
                NotificationChannel,
                (NotificationChannel.tenant_id == NotificationDelivery.tenant_id)
                & (NotificationChannel.id == NotificationDelivery.channel_id),
            )
            .where(NotificationDelivery.event_id.in_([e.id for e in events]))
            .order_by(NotificationDelivery.id)
        ).all()
        for delivery, channel in rows:
            deliveries[delivery.event_id].append(
                {
                    "channel": channel,
                    "status": delivery.status,
                    "attempts": delivery.attempts,
                    "error": delivery.error,
                    "sent_at": delivery.sent_at,
                }
            )
    return [
        {
            "id": e.id,
            "created_at": e.created_at,
            "session": e.session_id,
            "kind": e.kind,
            "title": render(e.kind, e.data, event_id=e.id, session_id=e.session_id, created_at=e.created_at).title,
            "deliveries": deliveries[e.id],
        }
        for e in events
    ]


def notifications(session: int | None = None, limit: int = 20) -> pd.DataFrame:
    """Your last notifications (of ``session``), newest first: the event, and per channel
    whether it was sent, is pending (attempts so far) or failed (why)."""
    import pandas as pd

    with store.session() as db:
        rows = recent(db, session, limit)
    table = [
        {
            **{k: v for k, v in row.items() if k != "deliveries"},
            "delivered": "; ".join(_delivery_text(d) for d in row["deliveries"]),
        }
        for row in rows
    ]
    columns = ["id", "created_at", "session", "kind", "title", "delivered"]
    return pd.DataFrame(table, columns=columns).set_index("id")


def notifications_html(session: int) -> str:
    """The session dashboard's "Notifications" table (read as the tenant)."""
    with store.session() as db:
        rows = recent(db, session, DASHBOARD_ROWS)
    if not rows:
        return "<h4>Notifications</h4><p class='wb-notifications'>none</p>"
    body = "".join(
        f"<tr class='wb-notification'><td>{row['created_at']:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(row['kind'])}</td>"
        f"<td>{html.escape(row['title'])}</td>"
        f"<td>{html.escape('; '.join(_delivery_text(d) for d in row['deliveries']))}</td></tr>"
        for row in rows
    )
    return (
        "<h4>Notifications</h4><table class='wb-table wb-notifications'><tr><th>time</th><th>event</th>"
        "<th>message</th><th>delivered</th></tr>" + body + "</table>"
    )


def _delivery_text(delivery: dict[str, Any]) -> str:
    status = delivery["status"]
    if status == "pending" and delivery["attempts"]:
        status = f"retrying ({delivery['attempts']} attempts)"
    if status in ("failed", "skipped") or (delivery["error"] and delivery["status"] == "pending"):
        status += f": {delivery['error']}"
    return f"{delivery['channel']}: {status}"
