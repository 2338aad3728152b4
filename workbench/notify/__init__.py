"""Notifications: hear on Telegram, a webhook or e-mail what your live sessions do.

From a notebook::

    import workbench as wb

    wb.notify.form()                                        # the same as below, with password fields
    phone = wb.notify.add_telegram("phone", bot_token, chat_id=123456789)
    wb.notify.add_webhook("ops", "https://hooks.example.com/T0/B0", secret=signing_secret,
                          events=["risk.breached", "run.failed", "session.error"])
    wb.notify.add_email("desk", host="smtp.example.com", sender="bot@example.com", to="me@example.com",
                        username="bot", password=smtp_password, session=3)   # only session #3
    wb.notify.test(phone)                                   # a test message now, or why not
    wb.notify.channels()                                    # where they send (no secret), state
    wb.notify.subscribe(phone, events="all")                # or a list of wb.notify.EVENTS
    wb.notify.notifications(session=3)                      # what was sent, retrying or failed
    wb.notify.send("rebalanced by hand", session=3)         # your own message
    wb.notify.remove(phone)

``EVENTS`` lists the kinds (sessions started, paused, stopped or in error; orders placed,
filled, cancelled; stop-loss and take-profit hits; risk limits breached; failed runs; daily
summaries). Channel secrets (bot token, webhook URL and signing secret, SMTP password) are
sealed by the key vault like exchange keys and never shown again.

How it works: database triggers file each event in the transaction that caused it (the
outbox, ``_outbox``), the workers deliver it with retries, back-off and rate limits
(``_delivery``), through transports registered by name (``_transport``: ``_telegram``,
``_webhook``, ``_email``); ``_channels`` stores the channels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from workbench._lazy import from_modules, lazy_exports
from workbench.errors import NotifyError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from workbench.notify._channels import Admin, Channel, listing
    from workbench.notify._delivery import Policy, defer_delivery, deliver
    from workbench.notify._events import DEFAULT_EVENTS, EVENTS, Message
    from workbench.notify._form import form
    from workbench.notify._outbox import notifications, notifications_html, send
    from workbench.notify._transport import DeliveryError, Setting, Transport, register, transports

_MODULES = {
    "workbench.notify._channels": ["Admin", "Channel", "listing"],
    "workbench.notify._events": ["DEFAULT_EVENTS", "EVENTS", "Message"],
    "workbench.notify._outbox": ["notifications", "notifications_html", "send"],
    "workbench.notify._form": ["form"],
    "workbench.notify._transport": ["DeliveryError", "Setting", "Transport", "register", "transports"],
    "workbench.notify._delivery": ["Policy", "defer_delivery", "deliver"],
}
_FUNCTIONS = [
    "add_channel",
    "add_email",
    "add_telegram",
    "add_webhook",
    "channels",
    "disable",
    "enable",
    "remove",
    "subscribe",
    "test",
]
__getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules(_MODULES), eager=[*_FUNCTIONS, "NotifyError"])
_UNCHANGED: Any = object()


def add_channel(
    kind: str,
    name: str,
    *,
    events: Iterable[str] | str | None = None,
    session: int | None = None,
    rate_limit: int | None = None,
    **settings: Any,
) -> int:
    """Add a channel of transport ``kind`` (``transports()``) named ``name``; its id. It hears
    ``events`` (default ``DEFAULT_EVENTS``; ``"all"``) of ``session`` (default every session),
    at most ``rate_limit`` messages a minute (default 20). ``settings`` are the transport's."""
    from workbench.notify._channels import admin

    return admin().add(kind, name, settings, events, session, rate_limit)


def add_telegram(name: str, bot_token: str, chat_id: int | str, **options: Any) -> int:
    """A Telegram channel: the bot with ``bot_token`` posts to ``chat_id``; see ``add_channel``."""
    return add_channel("telegram", name, bot_token=bot_token, chat_id=chat_id, **options)


def add_webhook(name: str, url: str, secret: str | None = None, **options: Any) -> int:
    """A webhook channel: JSON POSTed to ``url``, signed with ``secret`` when given (the body and
    the signature are documented in ``workbench.notify._webhook``); see ``add_channel``."""
    return add_channel("webhook", name, url=url, signing_secret=secret, **options)


def add_email(name: str, host: str, sender: str, to: str | list[str], **options: Any) -> int:
    """An e-mail channel through SMTP server ``host`` (``port`` 587, ``security`` "starttls",
    ``username`` and ``password`` when it needs a login); see ``add_channel``."""
    return add_channel("email", name, host=host, sender=sender, to=to, **options)


def channels() -> pd.DataFrame:
    """Your channels: where each sends (no secret), what it hears, and its state."""
    from workbench import store
    from workbench.notify._channels import listing

    with store.session() as db:
        return listing(db)


def test(channel: Channel) -> str:
    """Send a test message through ``channel`` (id or name) now; NotifyError says why it failed."""
    from workbench.notify._channels import admin

    return admin().test(channel)


def subscribe(channel: Channel, events: Iterable[str] | str | None = None, session: int | None = _UNCHANGED) -> None:
    """Set the event kinds ``channel`` hears (None: ``DEFAULT_EVENTS``; ``"all"``), and the
    session it hears about when ``session`` is given (None: every session)."""
    from workbench.notify._channels import admin

    changes: dict[str, Any] = {"events": events}
    if session is not _UNCHANGED:
        changes["session"] = session
    admin().change(channel, **changes)


def enable(channel: Channel) -> None:
    """Deliver through ``channel`` again (after it was disabled), its failure count cleared."""
    from workbench.notify._channels import admin

    admin().change(channel, enabled=True)


def disable(channel: Channel) -> None:
    """Stop delivering through ``channel`` (it keeps its settings)."""
    from workbench.notify._channels import admin

    admin().change(channel, enabled=False)


def remove(channel: Channel) -> None:
    """Delete ``channel`` and its sealed secrets (past notifications stay listed)."""
    from workbench.notify._channels import admin

    admin().remove(channel)
