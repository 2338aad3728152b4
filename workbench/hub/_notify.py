"""``ServiceChannels``: adds, changes, tests and removes a tenant's notification channels from
its server in the hub, which holds no master key to seal their secrets.

The same calls as ``workbench.notify._channels.Admin``, forwarded to the workbench service
(``notify/channels``), which runs an ``Admin`` for the calling hub user.
``workbench.notify`` uses it whenever the vault is a ``ServiceVault`` (``_channels.admin()``).
A channel named rather than numbered is looked up in the tenant's own list first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workbench.errors import ChannelNotFound, NotifyError
from workbench.hub._vault import ServiceClient
from workbench.notify import Channel
from workbench.vault import Secret


class ServiceChannels(ServiceClient):
    """Forwards channel changes to the workbench service at ``url`` (default: from the environment)."""

    error = NotifyError
    path = "notify/channels"

    def add(
        self,
        kind: str,
        name: str,
        settings: Mapping[str, Any],
        events: Iterable[str] | str | None,
        session: int | None,
        rate_limit: int | None,
    ) -> int:
        body = {
            "kind": kind,
            "name": name,
            "session": session,
            "rate_limit": rate_limit,
            "settings": {k: v.reveal() if isinstance(v, Secret) else v for k, v in settings.items()},
            "events": events if events is None or isinstance(events, str) else list(events),
        }
        return self._call("POST", "", body, f"add channel {name!r}")["id"]

    def change(self, channel: Channel, **values: Any) -> None:
        if "events" in values and not (values["events"] is None or isinstance(values["events"], str)):
            values["events"] = list(values["events"])
        self._call("PATCH", f"/{self._id(channel)}", values, f"change channel {channel!r}")

    def remove(self, channel: Channel) -> None:
        self._call("DELETE", f"/{self._id(channel)}", None, f"remove channel {channel!r}")

    def test(self, channel: Channel) -> str:
        return self._call("POST", f"/{self._id(channel)}/test", {}, f"test channel {channel!r}")["sent"]

    def _id(self, channel: Channel) -> int:
        if isinstance(channel, int) and not isinstance(channel, bool):
            return channel
        found = [c["id"] for c in self._call("GET", "", None, "list the channels") if c["name"] == channel]
        if not found:
            raise ChannelNotFound(f"no notification channel {channel!r}; workbench.notify.channels() lists yours")
        return found[0]
