"""The live dashboard of one trading session: ipywidgets + a bokeh chart, refreshed in the kernel.

``notebooks/dashboards/session.ipynb`` is one call, ``wb.dashboard()``, so Voila renders it
and the kernel keeps it current: an asyncio task reloads the session every few seconds and
updates the widgets in place (the chart is redrawn when the equity changed), so a viewer
sees new runs, fills and equity points without reloading. It reads through
``store.session()``, as the tenant: another tenant's session is unknown, like a missing one.

Which session: the argument; else ``WORKBENCH_SESSION_ID`` (set by the hub for a dashboard
server, and then final: the URL cannot switch sessions); else the Voila query string
``?session=N`` (``QUERY_STRING``).

``dashboard_page`` renders the same parts as one static HTML page, for a session shared with
the connected tenant: the workbench service serves it to the viewer (no kernel, no code of the
owner; every tenant string escaped; the chart's scripts carry the page's CSP nonce).
"""

from __future__ import annotations

import asyncio
import html
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as widgets
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench import store
from workbench.notify import notifications_html
from workbench.store.models import EquitySnapshot, Fill, LiveNotebook, NotebookRun, Order, TradingSession

Opener = Callable[[], AbstractContextManager[Session]]

SESSION_ENV = "WORKBENCH_SESSION_ID"
NOTEBOOK = Path(__file__).resolve().parent / "dashboards" / "session.ipynb"
REFRESH_SECONDS = 3.0
_RUNS, _FILLS, _POINTS = 15, 20, 5000
_STYLE = """<style>
.wb-table {border-collapse: collapse; font-size: 12px; margin: 4px 0 12px 0}
.wb-table th, .wb-table td {border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left}
.wb-failed {color: #b00020} .wb-succeeded {color: #1b5e20} .wb-skipped {color: #777}
</style>"""


def session_from_request() -> int | None:
    """The session a dashboard shows when no argument names it (see the module docstring)."""
    if os.environ.get(SESSION_ENV):
        return _int(os.environ[SESSION_ENV])
    values = parse_qs(os.environ.get("QUERY_STRING", "")).get("session")
    return _int(values[0]) if values else None


def dashboard(session: int | None = None, refresh: float | None = REFRESH_SECONDS) -> SessionDashboard:
    """The dashboard widget of ``session``; refreshes itself every ``refresh`` seconds
    while the kernel runs (None: only when ``refresh()`` is called)."""
    return SessionDashboard(session_from_request() if session is None else session, refresh)


class SessionDashboard(widgets.VBox):
    """Status, equity and drawdown, position, open orders, fills and the last runs of one session."""

    def __init__(self, session: int | None, refresh: float | None = REFRESH_SECONDS):
        self.session_id = session
        self.title = widgets.HTML()
        self.status = widgets.HTML()
        self.chart = widgets.HTML()
        self.tables = widgets.HTML()
        self._drawn: tuple | None = None
        self._task: asyncio.Task | None = None
        super().__init__([self.title, self.status, self.chart, self.tables])
        self.refresh()
        if refresh and self._found:
            self._start(refresh)

    def refresh(self) -> None:
        """Reload the session from the database and update every part in place."""
        data = _load(self.session_id) if self.session_id is not None else None
        self._found = data is not None
        if data is None:
            self.title.value = (
                f"<h3 class='wb-unknown'>No session #{self.session_id}: it does not exist or is not yours.</h3>"
                if self.session_id is not None
                else "<h3 class='wb-unknown'>No session given: open this dashboard with "
                "<code>?session=N</code> in its address.</h3>"
            )
            self.status.value = self.chart.value = self.tables.value = ""
            return
        self.title.value = _title_html(data["session"])
        self.status.value = _STYLE + _status_html(data)
        self._update_chart(data["equity"])
        self.tables.value = _tables_html(data) + notifications_html(data["session"].id)

    def stop(self) -> None:
        """Stop refreshing (the widget keeps its last state)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _start(self, interval: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script): refresh() by hand
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                return
            if not loop.is_running():
                return
        self._task = loop.create_task(self._refresh_forever(interval))

    async def _refresh_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a database hiccup: say so, try again next time
                self.status.value = f"<p class='wb-error'>refresh failed: {html.escape(str(exc).splitlines()[0])}</p>"

    def _update_chart(self, equity: pd.DataFrame) -> None:
        """Redraw the chart when the equity changed: a standalone bokeh page (BokehJS inline, so
        it works offline) in an iframe, which Voila and JupyterLab both render without an extension."""
        key = (len(equity), equity.index[-1] if len(equity) else None)
        if key == self._drawn:
            return
        from workbench.backtest._chart import standalone_html

        self.chart.value = standalone_html(
            _figure(equity), title="equity and drawdown", css_class="wb-chart", style="width:100%;height:470px;border:0"
        )
        self._drawn = key


def _figure(frame: pd.DataFrame) -> Any:
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    times = pd.to_datetime(frame.index, utc=True).tz_convert(None)
    equity = frame["equity"].astype(float)
    source = ColumnDataSource(
        {"ts": times, "equity": equity.to_numpy(), "drawdown": ((equity / equity.cummax() - 1.0) * 100).to_numpy()}
    )
    top = figure(
        height=260,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        title="Equity",
        tools="pan,wheel_zoom,box_zoom,reset,hover",
    )
    top.line("ts", "equity", source=source, line_width=2)
    top.scatter("ts", "equity", source=source, size=4)
    bottom = figure(
        height=160,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        title="Drawdown (%)",
        x_range=top.x_range,
        tools="pan,wheel_zoom,box_zoom,reset",
    )
    bottom.varea("ts", y1=0, y2="drawdown", source=source, fill_color="#c62828", fill_alpha=0.4)
    return column(top, bottom, sizing_mode="stretch_width")


def _load(session_id: int, opener: Opener | None = None, owner_id: int | None = None) -> dict[str, Any] | None:
    """The session's records as the connection sees them (None if it sees no such session,
    or, with ``owner_id``, none of that tenant)."""
    with (opener or store.session)() as db:
        trading = db.get(TradingSession, session_id)
        if trading is None or (owner_id is not None and trading.tenant_id != owner_id):
            return None
        equity = db.execute(
            select(
                EquitySnapshot.ts,
                EquitySnapshot.equity,
                EquitySnapshot.balance,
                EquitySnapshot.position,
                EquitySnapshot.pnl,
            )
            .where(EquitySnapshot.session_id == session_id)
            .order_by(EquitySnapshot.ts.desc())
            .limit(_POINTS)
        ).all()
        orders = db.scalars(
            select(Order).where(Order.session_id == session_id, Order.status.in_(("new", "open"))).order_by(Order.id)
        ).all()
        fills = db.execute(
            select(Fill, Order.side)
            .join(Order, (Order.tenant_id == Fill.tenant_id) & (Order.id == Fill.order_id))
            .where(Order.session_id == session_id)
            .order_by(Fill.ts.desc())
            .limit(_FILLS)
        ).all()
        live = db.scalar(
            select(LiveNotebook)
            .where(LiveNotebook.session_id == session_id)
            .order_by(LiveNotebook.version.desc())
            .limit(1)
        )
        # a viewer of a shared session reads its runs but not its live notebooks (revision 0011)
        run_session = func.coalesce(
            LiveNotebook.session_id, func.shared_live_session(NotebookRun.tenant_id, NotebookRun.live_notebook_id)
        )
        runs = db.scalars(
            select(NotebookRun)
            .outerjoin(
                LiveNotebook,
                (LiveNotebook.tenant_id == NotebookRun.tenant_id) & (LiveNotebook.id == NotebookRun.live_notebook_id),
            )
            .where(run_session == session_id)
            .order_by(NotebookRun.scheduled_for.desc(), NotebookRun.id.desc())
            .limit(_RUNS)
        ).all()
    frame = pd.DataFrame(equity, columns=["ts", "equity", "balance", "position", "pnl"]).iloc[::-1]
    return {
        "session": trading,
        "equity": frame.set_index("ts"),
        "orders": orders,
        "fills": fills,
        "live": live,
        "runs": runs,
    }


def _title_html(trading: TradingSession) -> str:
    return f"<h3>Session #{trading.id}: {html.escape(trading.symbol)} on {html.escape(trading.exchange)}</h3>"


def _status_html(data: dict[str, Any]) -> str:
    trading, equity, live = data["session"], data["equity"], data["live"]
    last = equity.iloc[-1] if len(equity) else None
    facts = [
        (
            "status",
            f"<b class='wb-status'>{html.escape(trading.status)}</b>"
            + (f" ({html.escape(trading.status_message)})" if trading.status_message else ""),
        ),
        ("equity", f"{float(last['equity']):,.2f}" if last is not None else "-"),
        ("position", f"{float(last['position']):g}" if last is not None else "-"),
        ("PnL", f"{float(last['pnl']):,.2f}" if last is not None else f"{float(trading.total_pnl):,.2f}"),
        ("points", f"<span class='wb-equity-points'>{len(equity)} equity points</span>"),
    ]
    if live is not None:
        nxt = f", next run {live.next_run_at:%Y-%m-%d %H:%M:%S} UTC" if live.next_run_at else ""
        facts.append(
            (
                "live notebook",
                f"{html.escape(Path(live.source_path).name)} v{live.version}, "
                f"{html.escape(live.schedule)}, {html.escape(live.status)}{nxt}",
            )
        )
    return " &nbsp;·&nbsp; ".join(f"{name}: {value}" for name, value in facts)


def _tables_html(data: dict[str, Any]) -> str:
    orders = [
        (o.client_order_id, o.side, o.type, _num(o.price), _num(o.amount), _num(o.filled), o.status)
        for o in data["orders"]
    ]
    fills = [
        (f"{f.ts:%Y-%m-%d %H:%M:%S}", side, _num(f.price), _num(f.amount), _num(f.fee)) for f, side in data["fills"]
    ]
    runs = "".join(
        f"<tr class='wb-run wb-{html.escape(r.status)}' data-status='{html.escape(r.status)}'><td>#{r.id}</td>"
        f"<td>{r.scheduled_for:%Y-%m-%d %H:%M:%S}</td><td>{_time(r.started_at)}</td><td>{_time(r.finished_at)}</td>"
        f"<td>{html.escape(r.status)}</td><td>{html.escape((r.error or '').splitlines()[0] if r.error else '')}</td>"
        f"</tr>"
        for r in data["runs"]
    )
    return (
        _table("Open orders", "wb-orders", ("client id", "side", "type", "price", "amount", "filled", "status"), orders)
        + _table("Fills", "wb-fills", ("time", "side", "price", "amount", "fee"), fills)
        + "<h4>Runs</h4><table class='wb-table wb-runs'><tr><th>run</th><th>scheduled</th><th>started</th>"
        "<th>finished</th><th>status</th><th>error</th></tr>" + runs + "</table>"
    )


def _table(title: str, css: str, header: tuple[str, ...], rows: list[tuple]) -> str:
    if not rows:
        return f"<h4>{title}</h4><p class='{css}'>none</p>"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h4>{title}</h4><table class='wb-table {css}'><tr>{head}</tr>{body}</table>"


def dashboard_page(
    session_id: int, *, opener: Opener, owner_id: int, nonce: str, bokeh_url: str, refresh: int = 5
) -> str | None:
    """A session's dashboard as one static page, read through ``opener`` (the viewer's own
    role), or None when the connection sees no session ``session_id`` of tenant ``owner_id``.
    Its only scripts are BokehJS (from ``bokeh_url``) and the chart's, both with ``nonce``; it
    reloads itself every ``refresh`` seconds."""
    from bokeh.embed import components

    data = _load(session_id, opener, owner_id)
    if data is None:
        return None
    chart = "<p class='wb-chart'>no equity yet</p>"
    if len(data["equity"]):
        code, div = components(_figure(data["equity"]), wrap_script=False)
        chart = (
            f"<script nonce='{nonce}' src='{html.escape(bokeh_url)}'></script>"
            f"<div class='wb-chart'>{div}</div><script nonce='{nonce}'>{code}</script>"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='{int(refresh)}'>"
        f"<title>Session #{int(session_id)}</title>{_STYLE}</head><body class='wb-shared'>"
        f"{_title_html(data['session'])}<p class='wb-facts'>{_status_html(data)}</p>{chart}{_tables_html(data)}"
        f"<p class='wb-note'>Shared read-only; this page reloads every {int(refresh)} s.</p></body></html>"
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def _time(value: Any) -> str:
    return "-" if value is None else f"{value:%H:%M:%S}"


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def serve_dashboard(session: int, port: int = 8866) -> int:
    """Serve the session's dashboard with Voila on 127.0.0.1 until Ctrl-C; the exit status."""
    url = f"http://127.0.0.1:{port}/?session={int(session)}"
    print(f"dashboard of session #{session}: {url}  (Ctrl-C stops)", flush=True)
    command = [
        sys.executable,
        "-m",
        "voila",
        str(NOTEBOOK),
        f"--port={port}",
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        "--show_tracebacks=False",
    ]
    return subprocess.run(command, env={**os.environ, SESSION_ENV: ""}).returncode
