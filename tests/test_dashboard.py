"""The session dashboard: its widgets in-process, then the whole path in a real browser.

The end-to-end test is the issue's proof: a paper session on replayed history is promoted,
the real dispatcher and a real worker execute its notebook with papermill (each run one
``wb.live.tick``), and the dashboard notebook, served by a real Voila process, is opened in
headless Chromium (Playwright, Debian's ``chromium``); equity points and run rows appear and
keep coming without a reload.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from test_scheduler import _as, _nothing_stays_live, _tenant, _trading_session, _wait, _worker, embedded_only  # noqa: F401

import workbench as wb
from workbench import store
from workbench.scheduler._dashboard import NOTEBOOK, SessionDashboard, session_from_request
from workbench.store.models import EquitySnapshot, LiveNotebook, NotebookRun

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LIVE_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "live" / "paper_channel.ipynb"


def _snapshots(session_id: int, count: int, tenant_id: int, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
    with store.owner_session() as s:
        for i in range(count):
            s.add(
                EquitySnapshot(
                    tenant_id=tenant_id,
                    session_id=session_id,
                    ts=start + timedelta(hours=i),
                    balance=10_000,
                    equity=10_000 + 100 * (i % 3) - 50 * i,
                    position=i,
                )
            )


def test_the_dashboard_shows_a_session_and_updates_in_place(database, tmp_path, monkeypatch):
    alice = _tenant("alice")
    session_id = _trading_session(alice)
    with store.owner_session() as s:
        tenant_id = s.scalar(select(store.Tenant.id).where(store.Tenant.name == alice))
    _snapshots(session_id, 5, tenant_id)
    with _as(alice, monkeypatch):
        board = wb.dashboard(session_id, refresh=None)
        assert isinstance(board, SessionDashboard)
        assert f"Session #{session_id}" in board.title.value
        assert "5 equity points" in board.status.value and "wb-status'>running" in board.status.value
        assert "<h4>Runs</h4>" in board.tables.value and "class='wb-run " not in board.tables.value
        chart = board.chart.value
        assert chart.startswith("<iframe class='wb-chart'") and "Bokeh" in chart
        # a run and more equity arrive: refresh() updates the same widgets
        with store.owner_session() as s:
            live = LiveNotebook(
                tenant_id=tenant_id,
                session_id=session_id,
                source_path="/x/live.ipynb",
                content="{}",
                schedule="candle:5m",
                status="active",
            )
            s.add(live)
            s.flush()
            s.add(
                NotebookRun(
                    tenant_id=tenant_id,
                    live_notebook_id=live.id,
                    status="failed",
                    scheduled_for=datetime(2026, 1, 2, tzinfo=UTC),
                    error="cell 3: ValueError: <b>no</b>\ntraceback",
                )
            )
        board.refresh()
        assert board.chart.value == chart  # the equity did not change: the chart is not redrawn
        assert "data-status='failed'" in board.tables.value
        assert "cell 3: ValueError: &lt;b&gt;no&lt;/b&gt;" in board.tables.value  # escaped, first line only
        assert "traceback" not in board.tables.value
        assert "live.ipynb v1, candle:5m, active" in board.status.value
        _snapshots(session_id, 6, tenant_id, start=datetime(2026, 2, 1, tzinfo=UTC))
        board.refresh()
        assert "11 equity points" in board.status.value and board.chart.value != chart


def test_unknown_and_foreign_sessions_get_the_same_clear_message(database, monkeypatch):
    alice, bob = _tenant("alice"), _tenant("bob")
    theirs = _trading_session(bob)
    with _as(alice, monkeypatch):
        for session_id in (theirs, theirs + 1000):
            board = wb.dashboard(session_id, refresh=None)
            assert f"No session #{session_id}: it does not exist or is not yours." in board.title.value
            assert board.chart.value == board.tables.value == ""
        monkeypatch.setenv("QUERY_STRING", "")
        monkeypatch.delenv("WORKBENCH_SESSION_ID", raising=False)
        assert "No session given" in wb.dashboard(refresh=None).title.value


def test_the_session_comes_from_the_hub_first_then_the_query_string(monkeypatch):
    monkeypatch.delenv("WORKBENCH_SESSION_ID", raising=False)
    monkeypatch.setenv("QUERY_STRING", "session=12&voila-template=lab")
    assert session_from_request() == 12
    monkeypatch.setenv("WORKBENCH_SESSION_ID", "7")  # a hub dashboard server: the URL cannot switch sessions
    assert session_from_request() == 7
    monkeypatch.setenv("WORKBENCH_SESSION_ID", "")
    monkeypatch.setenv("QUERY_STRING", "session=abc")
    assert session_from_request() is None


def test_the_dashboard_notebook_ships_with_the_package():
    assert NOTEBOOK.is_file() and NOTEBOOK.resolve() == (LIVE_NOTEBOOK.parents[1] / "dashboards" / "session.ipynb")


# --- end to end --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's chromium: `apt-get install -y --no-install-recommends chromium` "
            "(python3 dev.py test installs it when run as root)"
        )
    return CHROMIUM


def _count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


@pytest.mark.slow
def test_end_to_end_promoted_paper_session_in_a_voila_dashboard(embedded_only, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    alice = _tenant("alice")
    with _as(alice, monkeypatch):
        strategy = wb.save_strategy("breakout", "channel", {"entry_window": 24, "exit_window": 12})
        session_id = wb.live.create_session(strategy.id, exchange="paper")
        wb.live.start(session_id)
        wb.promote(LIVE_NOTEBOOK, session_id, "* * * * * */2")
    voila_env = {
        **os.environ,
        store.TENANT_URL_ENV: store.tenant_url(alice),
        "WORKBENCH_SESSION_ID": "",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    for variable in ("WORKBENCH_DATABASE_URL", "DATABASE_URL"):  # the dashboard runs as the tenant only
        voila_env.pop(variable, None)
    port = _free_port()
    voila_log = open(tmp_path / "voila.log", "wb")
    with _worker(tmp_path / "worker.log"):
        with _as(alice, monkeypatch):
            wb.scheduler.wait_for_runs(session_id, 3, timeout=180)
        voila = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
            env=voila_env,
            stdout=voila_log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            _wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "Voila to listen")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/?session={session_id}", timeout=120_000)
                page.wait_for_selector(".wb-equity-points", timeout=180_000)
                page.wait_for_selector("tr.wb-run[data-status='succeeded']", timeout=60_000)
                first_points = _count(r"(\d+) equity points", page.inner_text(".wb-equity-points"))
                first_runs = page.locator("tr.wb-run[data-status='succeeded']").count()
                assert first_points >= 3 and first_runs >= 3
                chart = page.frame_locator("iframe.wb-chart").locator("canvas")
                chart.first.wait_for(timeout=30_000)  # BokehJS drew the equity chart
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:  # new runs appear without a reload
                    points = _count(r"(\d+) equity points", page.inner_text(".wb-equity-points"))
                    if points > first_points:
                        break
                    page.wait_for_timeout(1000)
                assert points > first_points, "the dashboard did not update itself"
                assert page.locator("tr.wb-run[data-status='succeeded']").count() >= first_runs
                browser.close()
        finally:
            voila.terminate()
            voila.wait(30)
            voila_log.close()
    with _as(alice, monkeypatch):
        table = wb.scheduler.runs(session_id)
    assert (table["status"] == "succeeded").sum() >= 3
    assert not (table["status"] == "failed").any(), table["error"].dropna().tolist()
    with store.owner_session() as s:
        snapshots = s.scalar(
            select(store.EquitySnapshot.id).where(store.EquitySnapshot.session_id == session_id).limit(1)
        )
    assert snapshots is not None
