"""Live trading sessions: a saved strategy trading one symbol on an exchange, tick by tick.

From a notebook::

    import workbench as wb

    sid = wb.live.create_session("dip buyer", exchange="paper")          # replays bundled BTC/USD
    sid = wb.live.create_session("dip buyer", "BTC/USDT:USDT", exchange="binance", account=3)
    wb.live.start(sid)                  # paused -> running; also pause, resume, stop
    wb.live.tick(sid)                   # what a promoted notebook runs on every closed candle
    wb.live.status(sid)                 # state, balance, equity, position, PnL, open orders
    wb.live.sessions()                  # all of yours, as a table

A tick computes the strategy's orders with the backtest's own kernel (``_plan``), checks
the risk limits on the account (``_risk``), reconciles with the exchange and places each
order exactly once under a deterministic client order id (``_tick``), and records orders,
fills, balance, PnL and an equity snapshot (``_ledger``). ``sessions``'s states and their
moves are in ``_sessions``.
"""

from __future__ import annotations

from workbench.live._sessions import SessionStatus, create_session, pause, resume, sessions, start, status, stop
from workbench.live._tick import TickReport, tick

__all__ = [
    "SessionStatus",
    "TickReport",
    "create_session",
    "pause",
    "resume",
    "sessions",
    "start",
    "status",
    "stop",
    "tick",
]
