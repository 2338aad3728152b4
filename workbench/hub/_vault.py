"""``ServiceVault``: the vault of a tenant's server in the hub, which holds no master key.

Each call goes over HTTP to the workbench service, authenticated with the server's own hub
token (``JUPYTERHUB_API_TOKEN``), so the service knows the tenant without being told.
``workbench.vault.backend()`` picks this class whenever ``WORKBENCH_SERVICE_URL`` is set,
which the hub's spawner does for every tenant server; notebook code does not change.
Plaintext keys only travel one way, into the service; ``keys_for`` is refused by design
(live runs get their keys from the workers, never from a notebook server).
``ServiceClient`` is the HTTP part, shared with the notification channels' client (``_notify``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from workbench.errors import VaultError, WorkbenchError
from workbench.hub._settings import SERVICE_URL_ENV
from workbench.vault import Account, ExchangeKeys, Secret, VaultBackend

_TIMEOUT = 60.0


class ServiceClient:
    """Calls one resource of the workbench service (``path`` under its ``api/``) as this server's
    hub user; its failures raise ``error`` with the service's reason. Request bodies may carry
    secrets: they go in the JSON body only, never in the URL or a message."""

    error: type[WorkbenchError] = VaultError
    path = ""

    def __init__(self, url: str | None = None, token: str | None = None):
        url = url or os.environ.get(SERVICE_URL_ENV)
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url or not token:
            raise self.error(f"{type(self).__name__} needs {SERVICE_URL_ENV} and JUPYTERHUB_API_TOKEN (set by the hub)")
        self._api = url.rstrip("/") + "/api/" + self.path
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"token {token}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._api!r})"

    def _call(self, method: str, path: str, body: Any, what: str) -> Any:
        try:
            response = self._http.request(method, self._api + path, json=body, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            # the exception may quote the request; name only the kind of failure
            raise self.error(f"cannot {what}: the workbench service did not answer ({type(exc).__name__})") from None
        if response.ok:
            return response.json()
        try:
            message = response.json().get("error") or response.reason
        except ValueError:
            message = response.reason
        raise self.error(f"cannot {what}: {message}")


class ServiceVault(ServiceClient, VaultBackend):
    """Forwards the vault calls to the workbench service at ``url`` (default: from the environment)."""

    path = "vault/accounts"
    remote = True

    def add_account(
        self,
        exchange: str,
        api_key: Secret,
        secret: Secret,
        passphrase: Secret | None,
        permissions: str,
        label: str,
        ccxt_config: Mapping[str, Any] | None = None,
    ) -> int:
        if ccxt_config:  # the service signs with the key: where the exchange is, is the operator's choice
            raise VaultError(
                "ccxt_config cannot be passed when adding a key through the workbench service, "
                "which asks the exchange itself"
            )
        body = {
            "exchange": exchange,
            "api_key": api_key.reveal(),
            "secret": secret.reveal(),
            "permissions": permissions,
            "label": label,
        }
        if passphrase:
            body["passphrase"] = passphrase.reveal()
        return self._call("POST", "", body, "add an account")["id"]

    def accounts(self) -> list[Account]:
        return [
            Account(**{**a, "created_at": datetime.fromisoformat(a["created_at"])})
            for a in self._call("GET", "", None, "list the accounts")
        ]

    def deactivate(self, account_id: int) -> None:
        self._call("POST", f"/{int(account_id)}/deactivate", {}, f"deactivate account {account_id}")

    def remove(self, account_id: int) -> None:
        self._call("DELETE", f"/{int(account_id)}", None, f"remove account {account_id}")

    def keys_for(self, account_id: int) -> ExchangeKeys:
        raise VaultError(
            f"exchange account {account_id}: a notebook server never receives plaintext keys; "
            "promote the notebook to live and the worker that runs it gets them"
        )

    def check(self, account_id: int, ccxt_config: Mapping[str, Any] | None = None) -> dict[str, float]:
        return self._call(
            "POST", f"/{int(account_id)}/check", {"ccxt_config": dict(ccxt_config or {})}, f"check account {account_id}"
        )
