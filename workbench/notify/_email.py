"""``email``: each message is a plain-text e-mail sent through an SMTP server (``smtplib``).

Settings: ``host``, ``port`` (587), ``security`` (``starttls``, ``ssl`` or ``none``: a
local relay), ``username`` and ``password`` (secret; both or neither), ``sender`` and ``to``
(one address or several, comma-separated). SMTP's own answers decide what is retried: 4xx
codes, dropped connections and timeouts are; 5xx refusals and failed logins are not.

The host is the tenant's choice, so it passes the webhooks' public-address check and the
connection goes to the checked address (``_http.public_address``); TLS still verifies the
certificate against the host name.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from workbench.errors import NotifyError
from workbench.notify._events import Message
from workbench.notify._http import public_address
from workbench.notify._transport import DeliveryError, Setting, Transport, register
from workbench.vault import Secret

SECURITY = ("starttls", "ssl", "none")


class Email(Transport):
    name = "email"
    settings = (
        Setting("host", "SMTP host", help="the mail server, e.g. smtp.example.com"),
        Setting("port", "Port", required=False, default=587),
        Setting("security", "Security", required=False, default="starttls", help=" or ".join(SECURITY)),
        Setting("username", "User name", required=False),
        Setting("password", "Password", secret=True, required=False),
        Setting("sender", "From", help="the sender address"),
        Setting("to", "To", help="one address or several, comma-separated"),
    )

    def check(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        try:
            config["port"] = int(config["port"])
        except (TypeError, ValueError):
            raise NotifyError(f"port {config['port']!r} is not a number") from None
        if not 0 < config["port"] < 65536:
            raise NotifyError(f"port {config['port']} is outside 1..65535")
        if config["security"] not in SECURITY:
            raise NotifyError(f"security {config['security']!r}: choose one of {', '.join(SECURITY)}")
        if bool(config.get("username")) != bool(secrets.get("password")):
            raise NotifyError("give both username and password to log in to the SMTP server, or neither")
        recipients = config["to"] if isinstance(config["to"], list) else str(config["to"]).split(",")
        config["to"] = [address.strip() for address in recipients if address.strip()]
        for address in [config["sender"], *config["to"]]:
            if "@" not in address or any(c.isspace() for c in address):
                raise NotifyError(f"{address!r} is not an e-mail address")

    def target(self, config: Mapping[str, Any]) -> str:
        return f"{', '.join(config['to'])} via {config['host']}:{config['port']}"

    def send(self, message: Message, config: Mapping[str, Any], secrets: Mapping[str, Secret], timeout: float) -> None:
        mail = EmailMessage()
        mail["Subject"] = f"[workbench] {message.title}"
        mail["From"], mail["To"] = config["sender"], ", ".join(config["to"])
        mail["Date"], mail["Message-ID"] = formatdate(localtime=False), make_msgid(domain="workbench")
        mail["X-Workbench-Event"] = message.kind
        mail.set_content(message.plain() + "\n")
        host, port, security = config["host"], config["port"], config["security"]
        address = public_address(host, port)
        tls = ssl.create_default_context()
        try:
            server = (
                _PinnedSMTPSSL(address, host, port, timeout=timeout, context=tls)
                if security == "ssl"
                else _PinnedSMTP(address, host, port, timeout=timeout)
            )
            with server:
                if security == "starttls":
                    server.starttls(context=tls)
                if config.get("username"):
                    server.login(config["username"], secrets["password"].reveal())
                server.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{host}: login refused ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"{host} refused the recipients {sorted(exc.recipients)} ({codes})",
                permanent=all(code >= 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(
                f"{host} answered {exc.smtp_code} {said}"[:300], permanent=exc.smtp_code >= 500
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{host}: {exc}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{host}: its TLS certificate does not verify ({exc.verify_message})", permanent=True
            ) from None
        except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
            if not isinstance(exc, TimeoutError) and not isinstance(exc.__context__, TimeoutError):
                raise DeliveryError(f"{host}:{port}: {exc}") from None
            raise DeliveryError(f"{host}:{port} did not answer within {timeout:g} s") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"{host}:{port}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            ) from None


class _PinnedSMTP(smtplib.SMTP):
    """Connects to the checked ``address``, whatever ``host`` resolves to by now."""

    def __init__(self, address: str, *args, **kwargs):
        self._address = address
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection((self._address, port), timeout, self.source_address)


class _PinnedSMTPSSL(smtplib.SMTP_SSL, _PinnedSMTP):
    """The same over implicit TLS (SMTP_SSL wraps the pinned socket, checking ``host``)."""


register(Email())
