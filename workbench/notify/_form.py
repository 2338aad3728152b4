"""``workbench.notify.form()``: add, test and remove channels from a notebook.

Secrets go into password fields, never into code (which would keep them in the notebook
file), and the form clears them as soon as the channel is stored.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, cast

from workbench.errors import WorkbenchError
from workbench.notify import _transport
from workbench.notify._events import DEFAULT_EVENTS, EVENTS

if TYPE_CHECKING:  # pragma: no cover
    import ipywidgets


def form() -> ipywidgets.VBox:
    """Kind, name, the kind's settings, events, session, Add; then Send test and Remove for a
    chosen channel, and the channel table."""
    import ipywidgets as w

    from workbench import notify

    kinds = list(_transport.transports())
    kind = w.Dropdown(options=kinds, value=kinds[0], description="Kind")
    name = w.Text(description="Name", placeholder="e.g. phone")
    settings = w.VBox()
    events = w.SelectMultiple(
        options=[(f"{k}: {v}", k) for k, v in EVENTS.items()],
        value=DEFAULT_EVENTS,
        description="Events",
        rows=8,
        layout=w.Layout(width="90%"),
    )
    session = w.Dropdown(description="Session")
    add = w.Button(description="Add", button_style="primary", icon="bell")
    chosen = w.Dropdown(description="Channel")
    test = w.Button(description="Send test", icon="paper-plane")
    remove = w.Button(description="Remove", button_style="danger", icon="trash")
    message = w.HTML()
    table = w.HTML()
    fields: dict[str, w.Text] = {}

    def show_settings(_change: object = None) -> None:
        fields.clear()
        for setting in _transport.get(kind.value).settings:
            widget = w.Password if setting.secret else w.Text
            fields[setting.name] = widget(
                description=setting.label,
                placeholder=setting.help or (f"default {setting.default}" if setting.default is not None else ""),
                style={"description_width": "initial"},
            )
        settings.children = list(fields.values())

    def refresh() -> None:
        listing = notify.channels()
        table.value = listing.drop(columns=["created_at"]).to_html(classes="wb-table wb-channels")
        chosen.options = [(f"{row['name']} ({row['kind']})", int(index)) for index, row in listing.iterrows()]
        if chosen.value is None and chosen.options:
            chosen.value = chosen.options[-1][1]  # the newest
        session.options = [("all sessions", None)] + [
            (f"#{sid} {symbol} ({status})", sid) for sid, symbol, status in _sessions()
        ]

    def say(text: str, error: bool = False) -> None:
        style = ' style="color:#b00020"' if error else ""
        message.value = f"<span{style}>{html.escape(text)}</span>"

    def act(action):  # run a button's action; a WorkbenchError becomes the message
        def handler(_button: w.Button) -> None:
            try:
                say(action())
            except WorkbenchError as exc:
                say(str(exc), error=True)
                return
            refresh()

        return handler

    def on_add() -> str:
        values = {key: widget.value for key, widget in fields.items() if widget.value.strip()}
        channel = notify.add_channel(kind.value, name.value, events=list(events.value), session=session.value, **values)
        for widget in fields.values():
            widget.value = ""
        name.value = ""
        return f"Added {kind.value} channel {channel}."

    add.on_click(act(on_add))
    test.on_click(act(lambda: notify.test(chosen.value) if chosen.value is not None else "No channel chosen."))

    def on_remove() -> str:
        if chosen.value is None:
            return "No channel chosen."
        notify.remove(chosen.value)
        return "Removed."

    remove.on_click(act(on_remove))
    kind.observe(show_settings, names="value")
    show_settings()
    refresh()
    return w.VBox(
        [w.VBox([kind, name, settings, events, session, add]), w.HBox([chosen, test, remove]), message, table]
    )


def _sessions() -> list[tuple[int, str, str]]:
    from sqlalchemy import select

    from workbench import store
    from workbench.store.models import TradingSession

    with store.session() as db:
        return [
            cast(tuple[int, str, str], tuple(row))  # (id, symbol, status)
            for row in db.execute(
                select(TradingSession.id, TradingSession.symbol, TradingSession.status).order_by(
                    TradingSession.id.desc()
                )
            )
        ]
