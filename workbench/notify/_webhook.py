"""``webhook``: each message is POSTed as JSON to a URL, signed when a signing secret is set.

Settings: ``url`` (kept in the vault: webhook URLs often carry a token) and an optional
``signing_secret``. The request::

    POST <url>
    Content-Type: application/json
    User-Agent: workbench-notify
    X-Workbench-Event: order.filled
    X-Workbench-Delivery: wb-event-123          (the same on every retry: drop repeats)
    X-Workbench-Timestamp: 1732540000           (unix seconds when this attempt was signed)
    X-Workbench-Signature: sha256=<hex>         (only with a signing secret)

    {"id": "wb-event-123", "event": "order.filled", "session_id": 5,
     "created_at": "2026-11-25T15:00:00+00:00", "title": "Order filled: buy 0.01 BTC/USD at 60000",
     "text": "...", "data": {...the event's facts: numbers as decimal strings...}}

The signature is HMAC-SHA256 with the signing secret over ``<timestamp>.<body>`` (the
timestamp's decimal digits, a dot, the raw body bytes), in lowercase hex. A receiver
recomputes it, compares in constant time, and refuses timestamps older than a few minutes.
Any 2xx is success; 408, 425, 429 and 5xx are retried (429 and 503 after their
``Retry-After``); other answers are permanent failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from workbench.errors import NotifyError
from workbench.notify import _http
from workbench.notify._events import Message
from workbench.notify._transport import DeliveryError, Setting, Transport, register
from workbench.vault import Secret

_RETRIED = {408, 425, 429}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Workbench-Signature`` value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def body(message: Message) -> bytes:
    """The JSON document a webhook receives for ``message``."""
    return json.dumps(
        {
            "id": message.key,
            "event": message.kind,
            "session_id": message.session_id,
            "created_at": message.created_at.isoformat() if message.created_at else None,
            "title": message.title,
            "text": message.text,
            "data": dict(message.data),
        },
        sort_keys=True,
        default=str,
    ).encode()


class Webhook(Transport):
    name = "webhook"
    settings = (
        Setting("url", "URL", secret=True, help="where to POST each message, https://... (kept in the vault)"),
        Setting(
            "signing_secret",
            "Signing secret",
            secret=True,
            required=False,
            help="signs each request: X-Workbench-Signature = sha256=HMAC(secret, timestamp.body)",
        ),
    )

    def check(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        parts = urlsplit(secrets["url"])
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise NotifyError("url must be an https:// (or http://) address with a host name")
        port = f":{parts.port}" if parts.port else ""
        config["target"] = f"{parts.scheme}://{parts.hostname}{port}/…"

    def target(self, config: Mapping[str, Any]) -> str:
        return str(config["target"])

    def send(self, message: Message, config: Mapping[str, Any], secrets: Mapping[str, Secret], timeout: float) -> None:
        payload = body(message)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "workbench-notify",
            "X-Workbench-Event": message.kind,
            "X-Workbench-Delivery": message.key,
            "X-Workbench-Timestamp": timestamp,
        }
        if secrets.get("signing_secret"):
            headers["X-Workbench-Signature"] = signature(secrets["signing_secret"].reveal(), timestamp, payload)
        response = _http.post(secrets["url"].reveal(), payload, headers, timeout)
        if 200 <= response.status < 300:
            return
        said = f"the webhook answered {response.status}"
        if response.status in _RETRIED or response.status >= 500:
            raise DeliveryError(said, retry_after=response.retry_after() if response.status in (429, 503) else None)
        raise DeliveryError(
            said + (" (redirects are not followed)" if 300 <= response.status < 400 else ""), permanent=True
        )


register(Webhook())
