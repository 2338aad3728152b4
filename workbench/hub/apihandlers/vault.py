"""The caller's exchange accounts, kept by the vault with the master key the service holds.

JSON API (under ``/services/workbench/api``)::

    GET    vault/accounts                       the caller's exchange accounts (keys masked)
    POST   vault/accounts                       {exchange, api_key, secret, passphrase?, permissions, label}
    POST   vault/accounts/<id>/deactivate
    POST   vault/accounts/<id>/check            {ccxt_config?}: the exchange's non-zero balances
    DELETE vault/accounts/<id>
    GET    vault/accounts/<id>/keys             always 403: plaintext keys go to live runs only

Request bodies (keys) are never logged.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from workbench.hub.apihandlers.base import ID, APIHandler, Field, text
from workbench.vault import Secret

_ACCOUNT_FIELDS = {
    "exchange": text(32, True),
    "api_key": text(512, True),
    "secret": text(4096, True),
    "passphrase": text(256),
    "permissions": text(32),
    "label": text(100),
}
# ccxt options a tenant may pass to a connectivity check: no logger, no verbose, no keys, and
# nothing that moves the requests elsewhere (urls, hostname, proxies): the service signs them
# with the tenant's key, which must go to the exchange only, never to a host the tenant names
_CHECK_OPTIONS = {"timeout", "options"}
_CHECK_FIELDS = {"ccxt_config": Field((dict,), "an object of ccxt options", 2048, nullable=True)}


class VaultHandler(APIHandler):
    """Base of the handlers acting with the caller's vault (``make_app(vaults=...)``)."""

    def vault(self) -> Any:
        return self.application.settings["vaults"](self.tenant)


class AccountsHandler(VaultHandler):
    async def get(self) -> None:
        accounts = await self.call(lambda: self.vault().accounts())
        self.answer([{**vars(a), "created_at": a.created_at.isoformat()} for a in accounts])

    async def post(self) -> None:
        body = self.body(_ACCOUNT_FIELDS)
        passphrase = body.get("passphrase")
        account_id = await self.call(
            lambda: self.vault().add_account(
                body["exchange"],
                Secret(body["api_key"]),
                Secret(body["secret"]),
                Secret(passphrase) if passphrase else None,
                body.get("permissions", "read"),
                body.get("label", ""),
            )
        )
        self.answer({"id": account_id}, 201)


class AccountHandler(VaultHandler):
    async def delete(self, account_id: str) -> None:
        await self.call(lambda: self.vault().remove(int(account_id)))
        self.answer({"removed": int(account_id)})


class AccountActionHandler(VaultHandler):
    async def post(self, account_id: str, action: str) -> None:
        if action == "deactivate":
            await self.call(lambda: self.vault().deactivate(int(account_id)))
            self.answer({"deactivated": int(account_id)})
            return
        config = self.body(_CHECK_FIELDS).get("ccxt_config") or {}
        if set(config) - _CHECK_OPTIONS:
            raise web.HTTPError(400, f"ccxt_config may set only {sorted(_CHECK_OPTIONS)}")
        self.answer(await self.call(lambda: self.vault().check(int(account_id), config)))

    async def get(self, account_id: str, action: str) -> None:
        if action != "keys":
            raise web.HTTPError(405)
        # the account must be the caller's (404 otherwise), and even then: no plaintext over HTTP
        if int(account_id) not in {a.id for a in await self.call(lambda: self.vault().accounts())}:
            raise web.HTTPError(404, f"tenant {self.tenant!r} has no exchange account {account_id}")
        raise web.HTTPError(
            403,
            "plaintext keys are handed only to live runs, which the workers start; "
            "a notebook server never receives them",
        )


default_handlers = [
    ("/api/vault/accounts", AccountsHandler),
    (f"/api/vault/accounts/{ID}", AccountHandler),
    (f"/api/vault/accounts/{ID}/(deactivate|check|keys)", AccountActionHandler),
]
