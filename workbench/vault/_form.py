"""``workbench.vault.form()``: add exchange keys from a notebook without typing them into code.

Keys typed into a cell end up in the notebook file and its history; password fields do
not, and the form clears them as soon as the keys are stored.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.vault._backend import VaultBackend, backend
from workbench.vault._secret import Secret

if TYPE_CHECKING:  # pragma: no cover
    import ipywidgets

# listed first in the exchange dropdown: the ones the workbench is tested with
_PREFERRED = ("gate", "binance")


def form(vault: VaultBackend | None = None) -> ipywidgets.VBox:
    """An ipywidgets form: exchange, permissions, label, password fields, Add, and the accounts."""
    import ccxt
    import ipywidgets as w

    from workbench.store.models import PERMISSIONS

    vault = vault or backend()
    others = sorted(set(ccxt.exchanges) - set(_PREFERRED))
    exchange = w.Dropdown(options=[*_PREFERRED, *others], value=_PREFERRED[0], description="Exchange")
    permissions = w.Dropdown(options=list(PERMISSIONS), value="read", description="Permissions")
    label = w.Text(description="Label", placeholder="e.g. main spot account")
    api_key = w.Password(description="API key")
    secret = w.Password(description="Secret")
    passphrase = w.Password(description="Passphrase", placeholder="only if the exchange asks for one")
    add = w.Button(description="Add", button_style="primary", icon="key")
    message = w.HTML()
    table = w.HTML(_accounts_html(vault))

    def on_add(_button: w.Button) -> None:
        try:
            account_id = vault.add_account(
                exchange.value,
                Secret(api_key.value),
                Secret(secret.value),
                Secret(passphrase.value) if passphrase.value else None,
                permissions.value,
                label.value,
            )
        except WorkbenchError as exc:
            message.value = f'<span style="color:#b00020">{html.escape(str(exc))}</span>'
            return
        api_key.value = secret.value = passphrase.value = label.value = ""
        warning = vault.key_warning(account_id)
        message.value = f"Added {html.escape(exchange.value)} account {account_id}." + (
            f' <span style="color:#8a6d00">{html.escape(warning)}</span>' if warning else ""
        )
        table.value = _accounts_html(vault)

    add.on_click(on_add)
    fields = w.VBox([exchange, permissions, label, api_key, secret, passphrase, add, message])
    return w.VBox([fields, table])


def _accounts_html(vault: VaultBackend) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (a.id, a.exchange, a.label, a.permissions, "yes" if a.is_active else "no", a.key_hint)
        )
        + "</tr>"
        for a in vault.accounts()
    )
    head = "".join(f"<th>{h}</th>" for h in ("id", "exchange", "label", "permissions", "active", "key"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
