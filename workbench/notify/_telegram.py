"""``telegram``: a bot posts each message to a chat through the Bot API's ``sendMessage``.

Settings: ``bot_token`` (secret, from @BotFather), ``chat_id`` (a number, or ``@channelname``),
``api_url`` (default ``https://api.telegram.org``; a self-hosted Bot API server). Telegram's
``429`` answers carry ``parameters.retry_after``, which the workers wait out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from workbench.errors import NotifyError
from workbench.notify import _http
from workbench.notify._events import Message
from workbench.notify._transport import DeliveryError, Setting, Transport, register
from workbench.vault import Secret

_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_CHAT = re.compile(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}")
_LIMIT = 4096  # characters of one message


class Telegram(Transport):
    name = "telegram"
    settings = (
        Setting("bot_token", "Bot token", secret=True, help="the token @BotFather gave the bot, 123456:ABC..."),
        Setting("chat_id", "Chat id", help="the chat, group or channel to post to: a number or @channelname"),
        Setting("api_url", "Bot API URL", required=False, default="https://api.telegram.org"),
    )

    def check(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        if not _TOKEN.fullmatch(secrets["bot_token"]):
            raise NotifyError(
                "bot_token does not look like a Telegram bot token (digits, a colon, then letters, "
                "digits, '_' or '-'); copy it again from @BotFather"
            )
        config["chat_id"] = str(config["chat_id"])
        if not _CHAT.fullmatch(config["chat_id"]):
            raise NotifyError(f"chat_id {config['chat_id']!r} is neither a chat number nor an @channelname")
        if not str(config["api_url"]).startswith(("https://", "http://")):
            raise NotifyError(f"api_url {config['api_url']!r} must start with https:// (or http://)")

    def target(self, config: Mapping[str, Any]) -> str:
        return f"chat {config['chat_id']}"

    def send(self, message: Message, config: Mapping[str, Any], secrets: Mapping[str, Secret], timeout: float) -> None:
        url = f"{str(config['api_url']).rstrip('/')}/bot{secrets['bot_token'].reveal()}/sendMessage"
        body = json.dumps(
            {"chat_id": config["chat_id"], "text": message.plain()[:_LIMIT], "disable_web_page_preview": True}
        ).encode()
        response = _http.post(url, body, {"Content-Type": "application/json"}, timeout)
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if response.status == 200 and answer.get("ok"):
            return
        said = str(answer.get("description") or f"HTTP {response.status}")[:300]
        if response.status == 429:
            asked = (answer.get("parameters") or {}).get("retry_after")
            wait = float(asked) if isinstance(asked, (int, float)) else response.retry_after()
            raise DeliveryError(f"telegram rate limit: {said}", retry_after=wait)
        raise DeliveryError(f"telegram answered {response.status}: {said}", permanent=400 <= response.status < 500)


register(Telegram())
