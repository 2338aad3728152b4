"""The event kinds a channel can subscribe to, and how one event reads as a message.

Events carry facts (``data``, as the triggers of migration 0007 record them: numbers as
exact decimal strings); the words are made here, at delivery, so every transport says the
same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

EVENTS: dict[str, str] = {
    "session.started": "a session started or resumed trading",
    "session.paused": "a session was paused",
    "session.stopped": "a session stopped (by its user, at the end of a replay, or with its tenant)",
    "session.error": "a session stopped trading on an error (with the message)",
    "order.placed": "the exchange accepted an order (every resting order, every candle: busy)",
    "order.filled": "an order filled",
    "order.cancelled": "an order was cancelled, expired or rejected (busy, like order.placed)",
    "stop_loss.hit": "a stop-loss order filled",
    "take_profit.hit": "a take-profit order filled",
    "risk.breached": "a risk limit was breached: which one, by how much (the session stops trading)",
    "run.failed": "a scheduled run of a live notebook failed (with the failing cell)",
    "daily.summary": "a session's UTC day: PnL, trades, fees, equity",
    "channel.disabled": "another channel kept failing and was disabled",
    "message": "a message sent from a notebook with workbench.notify.send",
}
# what a channel hears unless told otherwise: everything but the per-candle order churn
DEFAULT_EVENTS: tuple[str, ...] = tuple(k for k in EVENTS if k not in ("order.placed", "order.cancelled"))


@dataclass(frozen=True)
class Message:
    """One event as a transport sends it. ``key`` is stable across retries of the same delivery
    (webhooks send it as ``X-Workbench-Delivery``, so a receiver can drop a repeat)."""

    kind: str
    title: str
    text: str
    key: str
    session_id: int | None = None
    created_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def plain(self) -> str:
        """Title and text, for transports without structure (chat, e-mail body)."""
        return f"{self.title}\n{self.text}" if self.text else self.title


def render(
    kind: str, data: Mapping[str, Any], *, event_id: int, session_id: int | None, created_at: datetime | None
) -> Message:
    """The message of one stored event."""
    title, text = _WORDS.get(kind, _unknown)(data, session_id)
    return Message(kind, title, text, f"wb-event-{event_id}", session_id, created_at, dict(data))


def test_message(channel: str) -> Message:
    """What ``workbench.notify.test`` sends."""
    return Message(
        "test", "Test message from workbench", f"If you read this, notification channel {channel!r} works.", "wb-test"
    )


def _num(value: Any) -> str:
    """An exact decimal as people write it: 0.01, 60000, -12.5."""
    if value is None:
        return "-"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{number.normalize():f}" if number != number.to_integral_value() else f"{number:.0f}"


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):+,.2f}"
    except InvalidOperation:
        return str(value)


def _of(session_id: int | None) -> str:
    return f"session #{session_id}" if session_id is not None else "no session"


def _session(kind: str) -> Callable[[Mapping[str, Any], int | None], tuple[str, str]]:
    def words(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
        what = {
            "session.started": "resumed" if data.get("resumed") else "started",
            "session.paused": "paused",
            "session.stopped": "stopped",
            "session.error": "stopped trading on an error",
        }[kind]
        about = f"{data.get('strategy')} on {data.get('exchange')} {data.get('symbol')}"
        return f"Session #{sid} {what}", f"{about}." + (f" {data['message']}" if data.get("message") else "")

    return words


def _order(headline: str, filled: bool) -> Callable[[Mapping[str, Any], int | None], tuple[str, str]]:
    def words(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
        price = data.get("average") or data.get("price")
        amount = data.get("filled") if filled else data.get("amount")
        at = f" at {_num(price)}" if price is not None else ""
        title = f"{headline}: {data.get('side')} {_num(amount)} {data.get('symbol')}{at}"
        text = (
            f"{data.get('type')} order {data.get('client_order_id')} (leg {data.get('leg')}) of {_of(sid)}, "
            f"{_num(data.get('filled'))} of {_num(data.get('amount'))} filled, status {data.get('status')}."
        )
        return title, text

    return words


def _risk(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    return f"Risk limit {data.get('limit') or ''} breached, session #{sid}".replace("  ", " "), str(data.get("message"))


def _run_failed(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    cell = f" in cell {data['failing_cell']}" if data.get("failing_cell") is not None else ""
    return f"Run #{data.get('run_id')} of session #{sid} failed{cell}", str(data.get("error") or "")


def _daily(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    title = f"Session #{sid} {data.get('symbol')}, {data.get('day')}: PnL {_money(data.get('pnl'))}"
    text = (
        f"{data.get('trades')} trades, fees {_num(data.get('fees'))}, equity {_num(data.get('equity'))}, "
        f"position {_num(data.get('position'))}, PnL since start {_money(data.get('total_pnl'))}."
    )
    return title, text


def _disabled(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    return f"Notification channel {data.get('channel')!r} disabled", str(data.get("reason"))


def _message(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    return (f"Message about session #{sid}" if sid is not None else "Message"), str(data.get("text"))


def _unknown(data: Mapping[str, Any], sid: int | None) -> tuple[str, str]:
    return f"Event of {_of(sid)}", ", ".join(f"{k}: {v}" for k, v in sorted(data.items()))


_WORDS: dict[str, Callable[[Mapping[str, Any], int | None], tuple[str, str]]] = {
    **{kind: _session(kind) for kind in ("session.started", "session.paused", "session.stopped", "session.error")},
    "order.placed": _order("Order placed", False),
    "order.filled": _order("Order filled", True),
    "order.cancelled": _order("Order cancelled", False),
    "stop_loss.hit": _order("Stop-loss hit", True),
    "take_profit.hit": _order("Take-profit hit", True),
    "risk.breached": _risk,
    "run.failed": _run_failed,
    "daily.summary": _daily,
    "channel.disabled": _disabled,
    "message": _message,
}
