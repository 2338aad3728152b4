"""Plaintext exchange keys and channel secrets leak nowhere: the vault and notification flows with
canary secrets, then a search.

Single-user mode as a user gets it (no DATABASE_URL: the embedded PostgreSQL and the
generated master key live in WORKBENCH_HOME), every logger at DEBUG including SQLAlchemy's
statement and parameter echo and ccxt's request log. Keys are added through the helpers,
the ipywidgets form and a notebook run by papermill (keys reach its kernel through the
environment, never its source), checked against a loopback Binance, listed, rotated,
deactivated and removed; notification channels (Telegram bot token, webhook URL and signing
secret, SMTP password) are added, tested, fail and deliver against loopback servers. Then the
random canary strings are searched for in the captured logs and outputs, a ``pg_dump`` of the
database, every file under WORKBENCH_HOME and the executed notebook, and found in none.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import subprocess
from pathlib import Path

import nbformat
import papermill
import pytest
from loopback_exchange import BinanceAccount
from loopback_notify import SmtpServer, TelegramBotApi, WebhookReceiver
from sqlalchemy import make_url

import workbench
from workbench import store, vault
from workbench.cli import main
from workbench.errors import NotifyError, VaultError
from workbench.notify._delivery import Policy, deliver
from workbench.notify._http import ALLOW_PRIVATE_ENV
from workbench.store._server import POSTGRES_BIN_PATH
from workbench.vault import _keyring


def _canary(kind: str) -> str:
    return f"CANARY{kind}{secrets.token_hex(12)}"


@pytest.fixture
def single_user_home(server_folder, monkeypatch):
    """A fresh WORKBENCH_HOME in default single-user mode; its embedded server stopped after."""
    home = server_folder / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    for variable in (*store._engine.OWNER_URL_ENV, store.TENANT_URL_ENV, _keyring.ENV_KEY, _keyring.ENV_FILE):
        monkeypatch.delenv(variable, raising=False)
    store.dispose()
    vault.use(None)
    yield home
    vault.use(None)
    store.embedded_server().stop()
    store.dispose()


@pytest.fixture
def debug_log():
    """Every logger at DEBUG into one buffer, SQLAlchemy's engine echo included."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "sqlalchemy.engine")}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _in_process_flow(exchange: BinanceAccount, canaries: dict[str, str], capsys) -> list[str]:
    """Drive every helper with canary keys; everything they showed, returned or raised."""
    shown = []
    good = workbench.vault.add_account("binance", exchange.api_key, exchange.secret, permissions="trade", label="good")
    bad = workbench.vault.add_account("binance", canaries["api_key"], canaries["secret"], label="bad")
    okx = workbench.vault.add_account("okx", canaries["okx_key"], canaries["okx_secret"], canaries["passphrase"])
    shown += [repr(workbench.vault.keys_for(a)) for a in (good, bad, okx)]
    shown.append(str(workbench.vault.check(good, exchange.config())))
    for attempt in (
        lambda: workbench.vault.check(bad, exchange.config()),
        lambda: workbench.vault.add_account("binance", canaries["api_key"], canaries["secret"], label="bad"),
        lambda: workbench.vault.add_account("okx", canaries["okx_key"], canaries["okx_secret"]),
    ):
        with pytest.raises(VaultError) as info:
            attempt()
        shown.append(str(info.value))

    form = workbench.vault.form()
    fields = {getattr(w, "description", ""): w for w in form.children[0].children}
    fields["Label"].value, fields["API key"].value = "form", canaries["form_key"]
    fields["Secret"].value, fields["Passphrase"].value = canaries["form_secret"], canaries["form_passphrase"]
    fields["Add"].click()
    shown += [w.value for w in form.children[0].children if hasattr(w, "value")] + [form.children[1].value]

    assert main(["vault", "rotate"]) == 0 and main(["vault", "status"]) == 0
    shown += [repr(workbench.vault.keys_for(a)) for a in (good, bad, okx)]
    workbench.vault.deactivate(bad)
    workbench.vault.remove(okx)
    table = workbench.vault.accounts()
    shown += [table.to_string(), table._repr_html_(), repr(workbench.vault.backend())]
    out, err = capsys.readouterr()
    return [*shown, out, err]


def _notify_flow(canaries: dict[str, str], capsys) -> list[str]:
    """Notification channels with canary secrets (bot token, webhook URL path and signing secret,
    SMTP password) added through the helpers and the form, tested, failing and delivering against
    the loopback servers; everything shown, returned or raised."""
    shown = []
    telegram = TelegramBotApi(f"12345:{canaries['tg_token']}", "424242")
    hook = WebhookReceiver(f"/hooks/{canaries['hook_path']}", canaries["hook_secret"])
    smtp = SmtpServer("bot", canaries["smtp_password"])
    with telegram, hook, smtp:
        phone = workbench.notify.add_telegram("phone", telegram.token, "424242", api_url=telegram.base)
        workbench.notify.add_telegram("wrong", f"12345:{canaries['tg_wrong']}", "424242", api_url=telegram.base)
        workbench.notify.add_webhook("ops", hook.url, secret=canaries["hook_secret"])
        workbench.notify.add_email(
            "desk",
            "127.0.0.1",
            "bot@example.com",
            "me@example.com",
            port=smtp.port,
            security="none",
            username="bot",
            password=canaries["smtp_password"],
        )
        form = workbench.notify.form()
        box = form.children[0]
        box.children[0].value, box.children[1].value = "webhook", "from the form"
        url, signing = box.children[2].children
        url.value = f"{hook.base}/hooks/{canaries['form_hook_path']}"
        signing.value = canaries["form_hook_secret"]
        box.children[-1].click()
        shown += [box.children[1].value, form.children[2].value, form.children[3].value]
        shown += [workbench.notify.test(name) for name in ("phone", "ops", "desk")]
        for name in ("wrong", "from the form"):  # the bot refuses the token; no hook at that path
            with pytest.raises(NotifyError) as info:
                workbench.notify.test(name)
            shown.append(str(info.value))
        telegram.fail(500)
        workbench.notify.send("canary check")
        report = deliver(Policy(timeout=2.0, backoff=0.0))
        report.add(deliver(Policy(timeout=2.0, backoff=0.0)))
        shown.append(repr(report))
        assert report.sent == 3 and len(telegram.messages) == 2 and len(smtp.messages) == 2
        assert len(hook.received) == 2
    assert main(["notify", "list"]) == 0
    shown += [
        workbench.notify.channels().to_string(),
        workbench.notify.notifications().to_string(),
        workbench.notify.notifications()._repr_html_(),
    ]
    workbench.notify.remove(phone)
    out, err = capsys.readouterr()
    return [*shown, out, err]


_NOTEBOOK = [
    (
        "import logging, os\n"
        "logging.basicConfig(level=logging.DEBUG, force=True)\n"
        "logging.getLogger('sqlalchemy.engine').setLevel(logging.DEBUG)\n"
        "import workbench as wb"
    ),
    "ccxt_config = {}",  # papermill parameters: where the loopback exchange is
    "account = wb.vault.add_account('binance', os.environ['NB_API_KEY'], os.environ['NB_SECRET'], label='notebook')",
    "wb.vault.accounts()",
    "keys = wb.vault.keys_for(account)\nprint(keys, keys.api_key, keys.secret)\nkeys",
    "wb.vault.check(account, ccxt_config)",
    (
        "try:\n"
        "    wb.vault.add_account('binance', os.environ['NB_API_KEY'], os.environ['NB_SECRET'], label='notebook')\n"
        "except wb.vault.VaultError as error:\n"
        "    print(error)"
    ),
]


def _run_notebook(folder: Path, exchange: BinanceAccount, monkeypatch) -> Path:
    """Execute the tiny notebook with papermill; the keys reach the kernel via its environment."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in _NOTEBOOK]
    notebook.cells[1].metadata["tags"] = ["parameters"]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, output = folder / "keys.ipynb", folder / "keys-out.ipynb"
    nbformat.write(notebook, source)
    monkeypatch.setenv("NB_API_KEY", exchange.api_key)
    monkeypatch.setenv("NB_SECRET", exchange.secret)
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters={"ccxt_config": exchange.config()},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(folder),
    )
    return output


def _pg_dump() -> bytes:
    url = make_url(store.database_url()).set(drivername="postgresql")
    env = {**os.environ, "PGPASSWORD": url.password}
    command = [
        str(POSTGRES_BIN_PATH / "pg_dump"),
        "--no-password",
        url.set(password=None).render_as_string(hide_password=False),
    ]
    return subprocess.run(command, env=env, capture_output=True, check=True, timeout=60).stdout


@pytest.mark.slow
def test_canary_keys_are_nowhere(single_user_home, debug_log, tmp_path, monkeypatch, capsys):
    nb_exchange = BinanceAccount(_canary("nbkey"), _canary("nbsecret"), {"BTC": "1"})
    exchange = BinanceAccount(_canary("key"), _canary("secret"), {"USDT": "100"})
    canaries = {
        k: _canary(k)
        for k in (
            "api_key",
            "secret",
            "okx_key",
            "okx_secret",
            "passphrase",
            "form_key",
            "form_secret",
            "form_passphrase",
        )
    }
    canaries.update(
        key=exchange.api_key, secret_=exchange.secret, nb_key=nb_exchange.api_key, nb_secret=nb_exchange.secret
    )
    canaries.update(
        {
            k: _canary(k)
            for k in (
                "tg_token",
                "tg_wrong",
                "hook_path",
                "hook_secret",
                "smtp_password",
                "form_hook_path",
                "form_hook_secret",
            )
        }
    )
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")  # the channels' servers are on loopback
    with exchange, nb_exchange:
        shown = _in_process_flow(exchange, canaries, capsys)
        shown += _notify_flow(canaries, capsys)
        executed = _run_notebook(tmp_path, nb_exchange, monkeypatch)
        assert exchange.requests_to("/api/v3/account") and nb_exchange.requests_to("/api/v3/account")
    dump = _pg_dump()
    files = [p for p in single_user_home.rglob("*") if p.is_file() and not p.is_socket()]

    places = {
        "captured logs": debug_log.getvalue().encode(),
        "outputs and errors": "\n".join(shown).encode(),
        "pg_dump": dump,
        "executed notebook": executed.read_bytes(),
    }
    places.update({str(p): p.read_bytes() for p in files})
    leaks = [
        (name, where) for name, canary in canaries.items() for where, data in places.items() if canary.encode() in data
    ]
    assert leaks == []

    # the places searched are the real ones: they hold the traces of the flow
    hint = vault.mask(exchange.api_key).encode()
    assert b"INSERT INTO exchange_accounts" in places["captured logs"] and b"X-MBX-APIKEY" in places["captured logs"]
    assert hint in dump and b"COPY public.exchange_accounts" in dump
    assert hint in places["outputs and errors"] and b"authentication failed" in places["outputs and errors"]
    assert vault.mask(nb_exchange.api_key).encode() in places["executed notebook"]
    assert b"INSERT INTO exchange_accounts" in places["executed notebook"]
    assert any(p.name == "master.key" for p in files) and any("postgres" in p.parts for p in files)
    assert (
        b"INSERT INTO notification_channels" in places["captured logs"] and b"COPY public.notification_channels" in dump
    )
    assert b"sent a test message to 'ops' (http://127.0.0.1:" in places["outputs and errors"]
    assert b"telegram answered 401: Unauthorized" in places["outputs and errors"]
