"""Transports: how a message reaches a channel, registered by name like papermill's engines.

A transport declares its settings (which are secrets, which are required, their defaults),
checks and normalises them, says where it sends in words that reveal no secret, and sends one
message or raises ``DeliveryError`` saying whether trying again may help. The built-ins are
``telegram``, ``webhook`` and ``email``; ``register(MyTransport())`` adds another, and the
channel store, the form and the workers pick it up by its ``name``.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from workbench.errors import NotifyError
from workbench.notify._events import Message
from workbench.vault import Secret

_BUILTINS = ("workbench.notify._telegram", "workbench.notify._webhook", "workbench.notify._email")


@dataclass(frozen=True)
class Setting:
    """One setting of a transport; ``secret`` ones are sealed in the vault, never stored plain."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: Any = None
    help: str = ""


class DeliveryError(Exception):
    """A send that failed. ``permanent``: the same message will fail again (bad token, unknown
    chat, refused recipient); else it may pass later, after ``retry_after`` seconds when the far
    end asked for a pause (HTTP 429). The text never holds a secret of the channel."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.permanent = permanent
        self.retry_after = retry_after


class Transport(abc.ABC):
    """Base of every transport: subclasses set ``name`` and ``settings`` and implement
    ``target`` and ``send``; ``check`` adds their own rules to the generic ones."""

    name: ClassVar[str]
    settings: ClassVar[tuple[Setting, ...]]

    def configure(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The checked settings, split into the plain config and the secrets."""
        known = {s.name: s for s in self.settings}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise NotifyError(
                f"a {self.name} channel has no setting {unknown[0]!r}; its settings are {', '.join(known)}"
            )
        config: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        for setting in self.settings:
            value = values.get(setting.name)
            value = value.reveal() if isinstance(value, Secret) else value
            if isinstance(value, str):
                value = value.strip()
            if value in (None, ""):
                if setting.required:
                    raise NotifyError(
                        f"a {self.name} channel needs {setting.name} ({setting.label.lower()}"
                        f"{': ' + setting.help if setting.help else ''})"
                    )
                value = setting.default
            if value is None:
                continue
            (secrets if setting.secret else config)[setting.name] = value
        self.check(config, secrets)
        return config, secrets

    def check(self, config: dict[str, Any], secrets: dict[str, str]) -> None:  # noqa: B027 - optional
        """Normalise ``config`` in place; NotifyError naming a setting that is wrong."""

    @abc.abstractmethod
    def target(self, config: Mapping[str, Any]) -> str:
        """Where the channel sends, in words that reveal no secret (for listings)."""

    @abc.abstractmethod
    def send(self, message: Message, config: Mapping[str, Any], secrets: Mapping[str, Secret], timeout: float) -> None:
        """Send ``message`` within about ``timeout`` seconds, or raise DeliveryError."""


_registry: dict[str, Transport] = {}


def register(transport: Transport) -> Transport:
    """Make ``transport`` available under its ``name`` (replacing one of that name)."""
    _registry[transport.name] = transport
    return transport


def transports() -> dict[str, Transport]:
    """Every registered transport by name: the built-ins first, then those other packages of
    the environment declare under the ``workbench.notify_transports`` entry-point group (a
    ``Transport`` instance or class), so the workers that deliver find them too."""
    for module in _BUILTINS:
        importlib.import_module(module)
    for point in entry_points(group="workbench.notify_transports"):
        if point.name not in _registry:
            found = point.load()
            register(found() if isinstance(found, type) else found)
    return dict(_registry)


def get(name: str) -> Transport:
    """The transport called ``name``; NotifyError listing the known ones otherwise."""
    known = transports()
    if name not in known:
        raise NotifyError(f"no notification transport {name!r}; the transports are {', '.join(known)}")
    return known[name]
