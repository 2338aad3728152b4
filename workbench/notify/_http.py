"""One JSON POST for the HTTP transports, on the standard library, with nothing logged.

``http.client`` instead of an HTTP library because those log each request's URL (a Telegram
bot token is part of its URL, a webhook URL may carry one). Redirects are not followed.

A tenant chooses the URL and the workers send from inside the deployment, so by default a
host that resolves to a loopback, private, link-local or otherwise non-public address is
refused (it would let a tenant reach internal services), and the connection goes to the
address that was checked (no second lookup). The operator allows such hosts with
``WORKBENCH_NOTIFY_ALLOW_PRIVATE=1`` (a self-hosted receiver, the tests' loopback servers).
A refused host is refused before any connection, with a message that names the address and
never the port, so a tenant learns nothing of which internal ports are open. The e-mail
transport connects through :func:`public_address` the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import cast
from urllib.parse import urlsplit

from workbench.notify._transport import DeliveryError

ALLOW_PRIVATE_ENV = "WORKBENCH_NOTIFY_ALLOW_PRIVATE"
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds (a number or an HTTP date), if any."""
        value = self.headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
    """POST ``body`` to ``url``; the answer, or DeliveryError (naming the host, never the URL)."""
    parts = urlsplit(url)
    host, tls = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    address = public_address(host, port)
    connection = _PinnedTLS(host, port, address, timeout) if tls else _Pinned(host, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        data = response.read(_MAX_BODY)
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except TimeoutError:
        raise DeliveryError(f"{host} did not answer within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            f"{host}: its TLS certificate does not verify ({exc.verify_message})", permanent=True
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{host}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        connection.close()


def public_address(host: str, port: int) -> str:
    """The address to connect to: the first one ``host`` resolves to that may be used
    (DeliveryError, permanent, when none may)."""
    if not host:
        raise DeliveryError("the URL names no host", permanent=True)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(f"{host} does not resolve: {exc.strerror}") from None
    addresses = [cast(str, info[4][0]) for info in found]  # IP addresses: (host, port...) tuples
    if os.environ.get(ALLOW_PRIVATE_ENV) == "1":
        return addresses[0]
    public = [a for a in addresses if ipaddress.ip_address(a.split("%")[0]).is_global]
    if not public:
        raise DeliveryError(
            f"{host} resolves to {addresses[0]}, which is not a public address; the operator "
            f"allows such hosts with {ALLOW_PRIVATE_ENV}=1",
            permanent=True,
        )
    return public[0]


class _Pinned(http.client.HTTPConnection):
    """Connects to the checked address, whatever ``host`` resolves to by now."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """The same over TLS; the certificate is checked against ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
