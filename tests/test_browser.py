"""The product in a real browser (Playwright driving Debian's chromium) against a real hub
with its worker: a trader signs up, the admin approves, the trader's JupyterLab spawns, the
editor of ``01_quickstart`` backtests, a canary exchange key goes in through the vault form,
the live paper notebook is promoted and its runs appear, the session dashboard opens and is
shared; another tenant then sees that dashboard and nothing else of the first one. Finally
the canary key is searched for in the logs, a database dump and every file, and found in
none. The rule builder is driven in Voila: rows added, numbers typed, errors shown, a backtest
drawn.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hub_harness import PASSWORD, Hub, free_port, running_hub
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import text

from workbench import store
from workbench.store._server import POSTGRES_BIN_PATH

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="needs Debian's chromium: apt-get install chromium (dev.py test does it as root)",
    ),
]
LONG = 240_000  # ms: kernels, numba compilation and scheduled runs on a 2-core machine


@pytest.fixture(scope="module")
def hub() -> Hub:
    with running_hub(worker=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _login(page, hub: Hub, name: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")


def _run_cell(page, code: str) -> None:
    """Insert a code cell above the selected one, type ``code`` into it and run it, as a person
    would (after running, the selection moves back to the cell below, so cells stack up)."""
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def _canary_nowhere(hub: Hub, canaries: list[str], tenant_homes: list[Path]) -> None:
    dump = subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_dump"),
            "--dbname",
            store.database_url().replace("postgresql+psycopg", "postgresql"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    places = {"database dump": dump}
    for folder in (hub.root, *tenant_homes):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and "postgres/data" not in str(path):
                places[str(path)] = path.read_bytes()
    for canary in canaries:
        leaks = [where for where, content in places.items() if canary.encode() in content]
        assert leaks == [], f"canary found in {leaks}"


def test_trader_journey_and_read_only_sharing(hub: Hub, browser):
    trader, viewer = hub.new_name("trader"), hub.settings.demo_tenants[1]
    canary_key, canary_secret = f"CANARYKEY{secrets.token_hex(10)}", f"CANARYSECRET{secrets.token_hex(16)}"
    owner = browser.new_context()
    page = owner.new_page()
    page.set_default_timeout(LONG)
    try:
        _journey(hub, browser, page, trader, viewer, canary_key, canary_secret)
    except Exception:
        # what the browser showed, for whoever reads the failure
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "workbench-browser-failure.png"), full_page=True)
        raise


def _journey(hub: Hub, browser, page, trader: str, viewer: str, canary_key: str, canary_secret: str) -> None:

    # sign up; not in before an admin approves
    page.goto(f"{hub.url}/hub/signup")
    page.fill("#username_input", trader)
    page.fill("#password_input", PASSWORD)
    page.fill("#password_confirmation_input", PASSWORD)
    page.click("#signup_submit")
    _login(page, hub, trader, PASSWORD)
    assert "/hub/login" in page.url

    admin = browser.new_context().new_page()
    admin_name = sorted(hub.settings.admins)[0]
    _login(admin, hub, admin_name, hub.passwords[admin_name])
    admin.goto(f"{hub.url}/hub/authorize")
    admin.locator(f"a[href$='authorize/{trader}']").click()
    admin.wait_for_url(re.compile(r"/hub/authorize"))
    assert admin.locator(f"a[href$='authorize/{trader}']").inner_text().strip() == "Unauthorize"

    # the other tenant logs in too (a hub user exists from the first login on)
    other = browser.new_context().new_page()
    other.set_default_timeout(LONG)
    _login(other, hub, viewer, hub.passwords[viewer])

    # approved: the server spawns and JupyterLab opens
    _login(page, hub, trader, PASSWORD)
    page.wait_for_url(re.compile(rf"/user/{trader}/lab"))
    page.goto(f"{hub.url}/user/{trader}/lab/tree/01_quickstart.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:  # JupyterLab may ask which kernel to start for a notebook it has not run yet
        select.wait_for(timeout=20_000)
        select.click()
    except PlaywrightTimeout:
        pass
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()

    # the editor of 01_quickstart backtests, and again when a parameter changes
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    _run_cell(
        page,
        "import workbench as wb\ncandles = wb.load_candles()\n"
        "wb.editor('channel', candles, {'entry_window': 48, 'exit_window': 24})",
    )
    page.get_by_text("backtest up to date").first.wait_for()
    field = page.locator(".widget-inline-hbox:has(label:text-is('entry_window')) input").first
    field.fill("96")
    field.press("Enter")
    page.get_by_text("backtest up to date").first.wait_for()
    page.get_by_placeholder("strategy name").fill("browser breakout")
    page.get_by_role("button", name="Save as strategy").click()
    page.get_by_text("saved: browser breakout").first.wait_for()

    # a canary key through the vault form: password fields, so the key is in no cell
    _run_cell(page, "wb.vault.form()")
    passwords = page.locator(".jp-Notebook input[type=password]")
    passwords.nth(0).fill(canary_key)
    passwords.nth(1).fill(canary_secret)
    page.locator(".jp-OutputArea button.widget-button", has_text=re.compile(r"^\W*Add\s*$")).click()
    page.get_by_text(canary_key[:4] + "…" + canary_key[-2:]).first.wait_for()

    # promote the live paper notebook; the worker runs it
    _run_cell(
        page,
        "session = wb.live.create_session('browser breakout', exchange='paper')\n"
        "wb.live.start(session)\n"
        "wb.promote('live/paper_channel.ipynb', session, schedule='* * * * * */5')\n"
        "print('PROMOTED', session)",
    )
    promoted = page.get_by_text(re.compile(r"PROMOTED \d+")).first
    promoted.wait_for()
    session = int(promoted.inner_text().split()[-1])
    page.keyboard.press("Control+s")

    page.goto(f"{hub.url}/services/workbench/")
    page.locator("#runs td.status", has_text="succeeded").first.wait_for()

    # the session's dashboard through the hub, then shared read-only
    page.locator("#sessions tr.row", has_text=str(session)).locator("button.open").click()
    page.wait_for_url(re.compile(rf"/user/{trader}/dash-{session}/"))
    page.get_by_text("Live session").first.wait_for()
    page.goto(f"{hub.url}/services/workbench/")
    page.fill(f"#share-{session}", viewer)
    page.locator("#sessions tr.row", has_text=str(session)).locator("button.share").click()
    page.locator("#sessions tr.row", has_text=viewer).first.wait_for()

    # the viewer: the session's page, rendered by the service, and nothing else of the trader's
    other.goto(f"{hub.url}/services/workbench/")
    other.locator("#shared a", has_text=trader).click()
    other.wait_for_url(re.compile(rf"/services/workbench/shared/{trader}/{session}$"))
    other.get_by_text(f"Session #{session}").first.wait_for()
    other.locator(".wb-chart canvas").first.wait_for()  # BokehJS ran under the page's nonce policy
    assert other.locator(".jp-InputArea-editor, .cm-editor, .CodeMirror").count() == 0  # no code to edit or run
    for forbidden in (
        f"/user/{trader}/lab",
        f"/user/{trader}/lab/tree/01_quickstart.ipynb",
        f"/user/{trader}/files/01_quickstart.ipynb",
        f"/user/{trader}/api/contents",
        f"/user/{trader}/dash-{session}/",
        f"/user/{trader}/dash-{session}/api/contents",
    ):
        response = other.goto(hub.url + forbidden)
        assert response.status == 403, forbidden
    assert "01_quickstart" not in other.content()

    # what the owner controls is shown as text: scripts planted in the session's strings never run
    payload = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    with store.owner_session() as db:
        db.execute(
            text("UPDATE trading_sessions SET status_message = :p WHERE id = :id"), {"p": payload, "id": session}
        )
        db.execute(
            text(
                "UPDATE strategies SET name = :p FROM trading_sessions t "
                "WHERE t.id = :id AND strategies.id = t.strategy_id"
            ),
            {"p": payload[:60], "id": session},
        )
        db.execute(
            text(
                "UPDATE notebook_runs SET error = :p WHERE id = (SELECT max(r.id) FROM notebook_runs r "
                "JOIN live_notebooks l ON l.id = r.live_notebook_id WHERE l.session_id = :id)"
            ),
            {"p": payload, "id": session},
        )
    for viewer_page, url in (
        (other, f"/services/workbench/shared/{trader}/{session}"),
        (page, "/services/workbench/"),
        (other, "/services/workbench/"),
    ):
        viewer_page.goto(hub.url + url)
        viewer_page.wait_for_load_state("load")
        assert viewer_page.evaluate("window.pwned") is None, url
    other.goto(f"{hub.url}/services/workbench/shared/{trader}/{session}")
    assert payload in other.locator("body").inner_text()

    homes = [Path(f"/home/jupyter-{name}") for name in (trader, viewer) if os.geteuid() == 0]
    _canary_nowhere(hub, [canary_key, canary_secret], homes)


RULE = (
    "vars fast = 12, slow = 26\n"
    "buy 50% when EMA($fast) > EMA($slow) and (RSI(14) < 60 or not close > BB(20, 2).upper)\n"
    "    stop_loss 2% take_profit 1%, 2.5%\n"
    "exit long when EMA($fast) crosses_below EMA($slow)\n"
)


def test_the_rule_builder_in_voila(browser, tmp_path: Path):
    """The builder's widgets in a real page: a row added, a variable typed (wrong, then right),
    the text form following, a backtest whose bokeh chart draws offline."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = tmp_path / "builder.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell(
                    f"import workbench as wb\nwb.rule_builder(wb.load_candles().iloc[-2000:], {RULE!r}, on_save=None)"
                )
            ],
            metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        ),
        notebook,
    )
    port = free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with open(tmp_path / "voila.log", "wb") as log:
        voila = subprocess.Popen(
            [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    page = browser.new_page()
    page.set_default_timeout(LONG)
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        page.goto(f"http://127.0.0.1:{port}/")
        text = page.locator("pre", has_text="buy 50% when")
        text.wait_for()
        assert text.inner_text().strip() == RULE.strip()
        page.get_by_role("button", name="row").first.click()  # + row in the first group
        page.locator("pre", has_text="EMA($slow) and RSI(14) < 30) and (RSI(14) < 60").wait_for()
        fast = page.get_by_placeholder("value").first
        fast.fill("x")
        fast.press("Enter")
        page.get_by_text("variable 'fast': 'x' is not a number").first.wait_for()
        fast.fill("20")
        fast.press("Enter")
        page.locator("pre", has_text="vars fast = 20, slow = 26").wait_for()
        page.get_by_text("rules valid; press Backtest").first.wait_for()
        page.get_by_role("button", name="Backtest").click()
        page.get_by_text("backtest up to date").first.wait_for()
        page.get_by_text("Sharpe ratio").first.wait_for()
        page.frame_locator("iframe.wb-backtest-chart").locator("canvas").first.wait_for()
    except Exception:
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "workbench-rule-builder-failure.png"), full_page=True)
        raise
    finally:
        page.close()
        voila.terminate()
        voila.wait(30)
