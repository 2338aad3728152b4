"""The caller's notification channels (``workbench.notify``), for the caller only.

JSON API (under ``/services/workbench/api``)::

    GET    notify/channels                      the caller's notification channels (no secret)
    POST   notify/channels                      {kind, name, settings, events?, session?, rate_limit?}: {id}
    PATCH  notify/channels/<id>                 {events?, session?, enabled?, rate_limit?}
    POST   notify/channels/<id>/test            send a test message now: {sent}
    DELETE notify/channels/<id>

Request bodies (channel secrets) are never logged.
"""

from __future__ import annotations

from typing import Any

from workbench.hub.apihandlers.base import ID, Field, text
from workbench.hub.apihandlers.vault import VaultHandler

_SESSION = Field((int,), "a trading session id, or null for every session", nullable=True)
_EVENTS = Field((list, str), "a list of event kinds, or null for all", 2048, nullable=True)
_RATE_LIMIT = Field((int,), "a whole number of messages per minute", nullable=True)
_CHANNEL_FIELDS = {
    "kind": text(32, True),
    "name": text(100, True),
    "settings": Field((dict,), "an object of the transport's settings", 4096),
    "events": _EVENTS,
    "session": _SESSION,
    "rate_limit": _RATE_LIMIT,
}
_CHANNEL_CHANGES = {
    "events": _EVENTS,
    "session": _SESSION,
    "enabled": Field((bool,), "true or false"),
    "rate_limit": _RATE_LIMIT,
}


class _ChannelHandler(VaultHandler):
    """The caller's notification channels, changed by ``Admin`` with the caller's vault."""

    def admin(self) -> Any:
        from workbench.notify import Admin

        return Admin(vault=self.vault())


class ChannelsHandler(_ChannelHandler):
    async def get(self) -> None:
        def listing() -> list[dict[str, Any]]:
            from workbench import store
            from workbench.notify import listing

            with store.tenant_session(self.tenant) as db:
                return listing(db).reset_index().to_dict("records")

        self.answer(await self.call(listing))

    async def post(self) -> None:
        body = self.body(_CHANNEL_FIELDS)
        channel_id = await self.call(
            lambda: self.admin().add(
                body["kind"],
                body["name"],
                body.get("settings", {}),
                body.get("events"),
                body.get("session"),
                body.get("rate_limit"),
            )
        )
        self.answer({"id": channel_id}, 201)


class ChannelHandler(_ChannelHandler):
    async def patch(self, channel_id: str) -> None:
        changes = self.body(_CHANNEL_CHANGES)
        await self.call(lambda: self.admin().change(int(channel_id), **changes))
        self.answer({"changed": int(channel_id)})

    async def delete(self, channel_id: str) -> None:
        await self.call(lambda: self.admin().remove(int(channel_id)))
        self.answer({"removed": int(channel_id)})


class ChannelTestHandler(_ChannelHandler):
    async def post(self, channel_id: str) -> None:
        self.answer({"sent": await self.call(lambda: self.admin().test(int(channel_id)))})


default_handlers = [
    ("/api/notify/channels", ChannelsHandler),
    (f"/api/notify/channels/{ID}", ChannelHandler),
    (f"/api/notify/channels/{ID}/test", ChannelTestHandler),
]
