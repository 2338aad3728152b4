"""Loopback stand-ins for what notifications reach: the Telegram Bot API, a webhook receiver and
an SMTP server, each checking what a real one checks (the bot token in the path, the HMAC
signature, the SMTP login) and answering with scripted faults: an HTTP or SMTP error status
(429 with ``retry_after``, 5xx, 451), or an answer slower than the client's timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _Faults:
    """Scripted answers, used one per request before the normal one."""

    def __init__(self) -> None:
        self._faults: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()

    def fail(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults.extend({"status": status, "retry_after": retry_after} for _ in range(times))

    def delay(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._faults.extend({"delay": seconds} for _ in range(times))

    def next_fault(self) -> dict[str, Any] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None


class _HttpServer(_Faults):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []  # every request that reached the server
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, answer = owner.answer(self.path, self.headers, body)
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    for name, value in {
                        **headers,
                        "Content-Type": "application/json",
                        "Content-Length": str(len(payload)),
                    }.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:  # a real server's log is not ours to search
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def scripted(self) -> tuple[int, dict[str, str], Any] | None:
        fault = self.next_fault()
        if fault is None:
            return None
        if "delay" in fault:
            time.sleep(fault["delay"])
            return None
        return (
            fault["status"],
            ({"Retry-After": f"{fault['retry_after']:g}"} if fault["retry_after"] else {}),
            {
                "ok": False,
                "error_code": fault["status"],
                "description": f"scripted {fault['status']}",
                **({"parameters": {"retry_after": fault["retry_after"]}} if fault["retry_after"] else {}),
            },
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class TelegramBotApi(_HttpServer):
    """``POST /bot<token>/sendMessage`` with ``{"chat_id", "text"}``, answered as Telegram does."""

    def __init__(self, token: str, chat_id: str) -> None:
        super().__init__()
        self.token, self.chat_id = token, chat_id
        self.messages: list[dict[str, Any]] = []

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        if not path.startswith("/bot") or not path.endswith("/sendMessage"):
            return 404, {}, {"ok": False, "error_code": 404, "description": "Not Found"}
        if path != f"/bot{self.token}/sendMessage":
            return 401, {}, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        scripted = self.scripted()
        if scripted:
            return scripted
        request = json.loads(body)
        if str(request.get("chat_id")) != self.chat_id:
            return 400, {}, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        self.messages.append(request)
        return 200, {}, {"ok": True, "result": {"message_id": len(self.messages), "text": request["text"]}}


class WebhookReceiver(_HttpServer):
    """Accepts JSON at ``path`` when ``X-Workbench-Signature`` is HMAC-SHA256(secret, "<ts>.<body>")."""

    def __init__(self, path: str, secret: str | None) -> None:
        super().__init__()
        self.path, self.secret = path, secret
        self.received: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return self.base + self.path

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        if path != self.path:
            return 404, {}, {"error": "no such hook"}
        if self.secret is not None:
            timestamp = headers.get("X-Workbench-Timestamp", "")
            expected = (
                "sha256=" + hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            )
            if (
                not hmac.compare_digest(expected, headers.get("X-Workbench-Signature", ""))
                or abs(time.time() - int(timestamp or 0)) > 300
            ):
                return 401, {}, {"error": "bad signature"}
        scripted = self.scripted()
        if scripted:
            return scripted
        self.received.append({"headers": dict(headers), "json": json.loads(body)})
        return 204, {}, {}


class SmtpServer(_Faults):
    """aiosmtpd on loopback with a login (no TLS: ``security="none"``); keeps what it accepts."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.messages: list[Any] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # a login is checked when offered (AUTH over plain text: on loopback, on purpose)
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, authenticator=self._login, auth_require_tls=False
        )

    def _login(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and hmac.compare_digest(auth_data.password.decode(), self.password)
        )
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        fault = self.next_fault()
        if fault and "delay" in fault:
            await asyncio.sleep(fault["delay"])
        elif fault:
            return f"{fault['status']} scripted failure"
        import email

        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def __enter__(self):
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()
