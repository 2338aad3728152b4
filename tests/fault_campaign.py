"""A seeded fault campaign for live sessions: one trial per seed, invariants checked after each.

A trial picks, from its seed alone, a venue (the loopback Binance or Gate of
``loopback_exchange``, talked to by the real ccxt classes through the workbench's ccxt
exchange), a market type (spot, or swap where the template needs or allows it), a template
with parameters that trade within a few bars, a stretch of the bundled candles and an
``on_error`` policy. It creates a session through the public API (``wb.vault.add_account``,
``wb.save_strategy``, ``wb.live.create_session``), ticks it bar by bar (``wb.live.tick`` with
``now`` at each bar's open, the book trading at that open) while injecting seeded faults:

* answers lost after the venue carried the request out (order sends and cancels);
* delayed visibility of accepted orders and their trades (``Book.visibility_delay``);
* partial fills (``Book.partial_next``);
* 5xx and 429 (with Retry-After) on reads; answers slower than the client's timeout;
* rejects: a filter failure (the session ends in ``error``, sometimes resumed) and
  insufficient funds (the leg is skipped);
* crashes: an exception that is not an ``Exception`` raised at a named checkpoint of the tick
  (``workbench.live._tick.checkpoint``, as the tests replace it), the process dying there; and,
  for a fraction of trials, a real SIGKILL of a child process running the ticks.

Then the faults stop, the session ticks a few clean bars (what the next runs of a scheduler
do) and is stopped or left running, and the invariants are checked against the loopback's own
books and the database: no client order id executed twice, every exchange trade recorded once
(and nothing else), the recorded fills make the venue's position, and a session that ended in
``error`` or ``stopped`` holding a position has a native stop resting on it, or its policy is
``leave``. ``run_trial(seed)`` needs a migrated database (the test fixtures' ``database``, or a
fresh WORKBENCH_HOME as ``benchmarks/fault_campaign.py`` makes); ``python
tests/fault_campaign.py SEED`` replays one trial in a fresh embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from loopback_exchange import (
    Binance,
    Book,
    Gate,
    LoopbackExchange,
    Reply,
    Request,
    answer_binance_key_restrictions,
    answer_gate_key_permissions,
)
from sqlalchemy import select, text

import workbench as wb
from workbench import store
from workbench.errors import ExchangeError, ExchangeUnavailable, InvalidOrder, RateLimited, SessionError, WorkbenchError
from workbench.live import _tick

VENUES = ("binance", "gate")
TEMPLATES = ("channel", "ema_reversal", "market_making")
POLICIES = ("protect", "protect", "flatten", "leave")  # protect is the default: drawn twice as often
CHECKPOINTS = ("intent_recorded", "before_send", "after_send", "after_write", "fills_recorded")
SYMBOL = "BTC/USDT"
SYMBOLS = {"spot": "BTC/USDT", "swap": "BTC/USDT:USDT"}
BALANCE = "10000"
TIMEOUT_S = 1.5  # the ccxt client's timeout
SLOW_S = 1.8  # a slow answer: beyond the timeout
VISIBILITY_WAIT_S = 3.0  # the sessions' order_visibility_wait (the default)
MAX_VISIBILITY_S = 0.6  # delayed visibility stays below the wait: a slow send plus it must fit in it
RETRY_AFTER_S = (0.01, 0.05, 0.2)  # what a 429 asks to wait
PRICE_ROUTE = "/fault-campaign/price"  # where a child process moves the loopback's market
# the venues' amount step and smallest order value (quote), by venue and market type: a
# position below either cannot be closed or protected, so it may stay
DUST = {
    ("binance", "spot"): (Decimal("0.00001"), Decimal(5)),
    ("binance", "swap"): (Decimal("0.001"), Decimal(0)),
    ("gate", "spot"): (Decimal("0.0001"), Decimal(3)),
    ("gate", "swap"): (Decimal("0.0001"), Decimal(0)),
}


class ProcessDied(BaseException):
    """Stands for the process dying at a checkpoint: not an ``Exception``, so nothing in the
    tick catches it (as nothing runs after a real death)."""


# -- what a trial does, drawn from its seed ---------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault, injected just before bar ``bar`` is ticked."""

    bar: int
    kind: str  # lose_send, lose_cancel, read_5xx, read_429, slow_read, slow_send, partial, visibility,
    #            reject_invalid, reject_funds, crash
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind}@{self.bar}" + (f"({shown})" if shown else "")


@dataclass(frozen=True)
class TrialPlan:
    """Everything a trial does, fixed by its seed (timing may still differ between runs)."""

    seed: int
    venue: str
    market: str
    template: str
    params: dict[str, Any]
    on_error: str
    offset: int  # the first bundled candle of the trial's stretch
    bars: int  # bars 1 .. bars-1 are ticked
    settle_from: int  # from this bar on, no faults: the session heals
    visibility: float  # the venue's initial visibility delay (s)
    faults: tuple[Fault, ...]
    kill: tuple[int, str, int] | None  # (bar, checkpoint, nth arrival): a child process is SIGKILLed there
    retry_after_crash: bool  # after a crash, tick the same bar again (else go on to the next)
    resume_after_error: bool  # a session in error is resumed (once), as after a human looked at it
    stop_at_end: bool
    stop_fault: str | None  # lose_send, read_5xx, crash (at a checkpoint of the wind-down), reject, reject_funds

    def describe(self) -> str:
        mix = [str(f) for f in self.faults]
        if self.kill:
            mix.append(f"sigkill@{self.kill[0]}({self.kill[1]}#{self.kill[2]})")
        if self.stop_at_end:
            mix.append(f"stop({self.stop_fault})" if self.stop_fault else "stop")
        return f"vis={self.visibility:g} " + " ".join(mix)


def _params(rng: random.Random, template: str, market: str) -> dict[str, Any]:
    """Parameter sets that trade within a few bars (those of tests/test_live.py, varied)."""
    if template == "channel":
        direction = "long" if market == "spot" else rng.choice(["long", "both", "short"])
        return {
            "entry_window": rng.choice([4, 5, 6]),
            "exit_window": rng.choice([2, 3]),
            "direction": direction,
            "position_size": rng.choice([0.3, 0.5, 0.8]),
        }
    if template == "ema_reversal":
        params: dict[str, Any] = {
            "ema_window": rng.choice([10, 20]),
            "dip_levels": [0.3, 0.6, 1.0],
            "stop_loss": rng.choice([0.8, 1.5]),
            "take_profit": [0.5, 1.0],
            "position_size": rng.choice([0.5, 0.9]),
        }
        if market == "swap":
            params["leverage"] = rng.choice([1, 2, 3])
        return params
    return {
        "spread": rng.choice([0.3, 0.5, 1.0]),
        "order_size": rng.choice([0.03, 0.05]),
        "max_inventory": rng.choice([0.5, 1.0]),
        "inventory": "long_only" if market == "spot" else "both",
    }


def plan_trial(seed: int, *, bars: int = 30, kill_fraction: float = 0.1) -> TrialPlan:
    """The trial of ``seed``: venue, market, template, parameters and its faults."""
    rng = random.Random(seed)
    venue, template = rng.choice(VENUES), rng.choice(TEMPLATES)
    market = rng.choice(["spot", "swap"])  # every template trades both (long only on spot)
    params = _params(rng, template, market)
    offset = rng.randrange(0, 17_000)
    settle_from = bars - 4
    kinds = [
        "lose_send",
        "lose_send",
        "lose_cancel",
        "read_5xx",
        "read_429",
        "slow_read",
        "slow_send",
        "partial",
        "partial",
        "visibility",
        "reject_invalid",
        "reject_funds",
        "crash",
        "crash",
        "crash",
    ]
    if venue == "gate":  # Gate's cancels go to /orders/{id}: a fault cannot name that path in advance
        kinds.remove("lose_cancel")
    faults = []
    for _ in range(rng.randint(2, 7)):
        kind, bar = rng.choice(kinds), rng.randrange(3, settle_from)
        detail: dict[str, Any] = {}
        if kind == "lose_send":
            detail = {"drop": rng.random() < 0.5, "times": rng.choice([1, 1, 2])}
        elif kind in ("read_5xx", "read_429", "slow_read"):
            detail = {"path": rng.randrange(1000), "after": rng.choice([0, 0, 1, 2]), "times": rng.choice([1, 2, 3])}
            if kind == "read_5xx":
                detail["status"] = rng.choice([500, 502, 503, 504])
        elif kind == "partial":
            detail = {"fraction": rng.choice(["0.25", "0.5", "0.7"])}
        elif kind == "visibility":
            detail = {"seconds": rng.choice([0.0, 0.2, 0.4, MAX_VISIBILITY_S])}
        elif kind == "crash":
            detail = {"point": rng.choice(CHECKPOINTS), "nth": rng.choice([1, 1, 2, 3])}
        faults.append(Fault(bar, kind, detail))
    faults.sort(key=lambda f: f.bar)
    kill = None
    if rng.random() < kill_fraction:
        kill = (rng.randrange(3, settle_from - 2), rng.choice(CHECKPOINTS), rng.choice([1, 1, 2]))
    stop_at_end = rng.random() < 0.7
    stop_fault = (
        rng.choice([None, None, "lose_send", "read_5xx", "crash", "reject", "reject_funds"]) if stop_at_end else None
    )
    return TrialPlan(
        seed,
        venue,
        market,
        template,
        params,
        rng.choice(POLICIES),
        offset,
        bars,
        settle_from,
        rng.choice([0.0, 0.1, 0.3]),
        tuple(faults),
        kill,
        rng.random() < 0.5,
        rng.random() < 0.5,
        stop_at_end,
        stop_fault,
    )


# -- what a trial found ----------------------------------------------------------------------


@dataclass
class TrialResult:
    """The invariants' verdict on one trial; every count is 0 when the engine held."""

    seed: int
    venue: str
    market: str
    template: str
    faults: str  # the fault mix, as ``TrialPlan.describe`` says it
    status: str = ""  # the session's final status
    message: str = ""  # its final status message
    duplicates: int = 0  # client order ids the venue accepted more than once
    lost_fills: int = 0  # venue trades not recorded, plus recorded fills the venue has not
    ledger_mismatch: int = 0  # 1 when the recorded fills do not make the venue's position
    unprotected: int = 0  # 1 when an ended session holds a position with no resting stop (not 'leave')
    errors: list[str] = field(default_factory=list)  # unexpected exceptions, with their message
    details: list[str] = field(default_factory=list)  # what each broken invariant saw
    events: list[str] = field(default_factory=list)  # expected failures the trial went through
    trace: list[str] = field(default_factory=list)  # the venue's and the database's orders, when broken
    orders: int = 0  # orders the venue accepted from the session
    fills: int = 0  # trades on the venue
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost_fills or self.ledger_mismatch or self.unprotected or self.errors)

    def summary(self) -> str:
        """One line: enough to find the trial again (its seed) and see what broke."""
        counts = (
            f"dup={self.duplicates} lost={self.lost_fills} ledger={self.ledger_mismatch} "
            f"unprotected={self.unprotected} errors={len(self.errors)}"
        )
        more = [f"(+{len(self.errors) - 3} more errors)"] if len(self.errors) > 3 else []
        found = "; ".join(self.details + self.errors[:3] + more)
        return (
            f"seed {self.seed}: {self.venue} {self.market} {self.template} [{self.status}] {counts} "
            f"orders={self.orders} fills={self.fills} faults: {self.faults}" + (f" -- {found}" if found else "")
        )


# -- the venue ---------------------------------------------------------------------------------


def _candles(offset: int, bars: int) -> pd.DataFrame:
    """Bundled candles from ``offset``, moved to end an hour ago (a signed request's real
    timestamp must fit the venue's window)."""
    candles = wb.load_candles().iloc[offset : offset + bars].copy()
    last = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=1)
    candles.index = pd.date_range(end=last, periods=len(candles), freq="1h", name="time")
    candles.attrs["timeframe"] = "1h"
    return candles


@dataclass
class _Venue:
    """The loopback venue of a trial and the paths its faults aim at."""

    server: LoopbackExchange
    name: str
    market: str
    urls: Any

    @property
    def book(self) -> Book:
        return self.server.spot if self.market == "spot" else self.server.futures

    @property
    def order_path(self) -> str:
        return {
            ("binance", "spot"): "/api/v3/order",
            ("binance", "swap"): "/fapi/v1/order",
            ("gate", "spot"): "/api/v4/spot/orders",
            ("gate", "swap"): "/api/v4/futures/usdt/orders",
        }[(self.name, self.market)]

    @property
    def read_paths(self) -> list[tuple[str, str]]:
        """(method, path) of the reads a tick makes (order lookups by id on Gate name the id)."""
        paths = {
            ("binance", "spot"): [
                "/api/v3/account",
                "/api/v3/myTrades",
                "/api/v3/order",
                "/api/v3/allOrders",
                "/api/v3/klines",
                "/api/v3/exchangeInfo",
            ],
            ("binance", "swap"): [
                "/fapi/v3/account",
                "/fapi/v1/userTrades",
                "/fapi/v1/order",
                "/fapi/v1/allOrders",
                "/fapi/v1/klines",
                "/fapi/v3/positionRisk",
                "/fapi/v1/algoOrder",
                "/fapi/v1/exchangeInfo",
            ],
            ("gate", "spot"): [
                "/api/v4/spot/accounts",
                "/api/v4/spot/my_trades",
                "/api/v4/spot/orders",
                "/api/v4/spot/candlesticks",
                "/api/v4/spot/open_orders",
                "/api/v4/spot/currency_pairs",
            ],
            ("gate", "swap"): [
                "/api/v4/futures/usdt/accounts",
                "/api/v4/futures/usdt/my_trades_timerange",
                "/api/v4/futures/usdt/orders",
                "/api/v4/futures/usdt/candlesticks",
                "/api/v4/futures/usdt/positions",
                "/api/v4/futures/usdt/contracts",
            ],
        }
        return [("GET", p) for p in paths[(self.name, self.market)]]

    @property
    def stop_paths(self) -> list[str]:
        """Where stops go when they do not go with the orders (USDⓈ-M algo orders, Gate price orders)."""
        return {
            ("binance", "swap"): ["/fapi/v1/algoOrder"],
            ("gate", "spot"): ["/api/v4/spot/price_orders"],
            ("gate", "swap"): ["/api/v4/futures/usdt/price_orders"],
        }.get((self.name, self.market), [])

    @property
    def cancel_paths(self) -> list[str]:
        return {
            ("binance", "spot"): ["/api/v3/order"],
            ("binance", "swap"): ["/fapi/v1/order", "/fapi/v1/algoOrder"],
        }.get((self.name, self.market), [])

    def lost_body(self, drop: bool) -> dict[str, Any]:
        """How an answer is lost: the connection dropped, or the venue's own 'status unknown'."""
        if drop:
            return {}
        if self.name == "binance":
            return {
                "status": 503,
                "body": {
                    "code": -1007,
                    "msg": "Timeout waiting for response from backend "
                    "server. Send status unknown; execution status unknown.",
                },
            }
        return {"status": 502, "body": "Bad Gateway"}

    def reject(self, kind: str) -> tuple[int, Any]:
        """A venue's refusal of an order: a filter failure, or not enough funds."""
        if self.name == "binance" and self.market == "spot":
            return (
                (400, {"code": -1013, "msg": "Filter failure: NOTIONAL"})
                if kind == "reject_invalid"
                else (400, {"code": -2010, "msg": "Account has insufficient balance for requested action."})
            )
        if self.name == "binance":
            return (
                (400, {"code": -1111, "msg": "Precision is over the maximum defined for this asset."})
                if kind == "reject_invalid"
                else (400, {"code": -2019, "msg": "Margin is insufficient."})
            )
        if kind == "reject_invalid":
            return 400, {"label": "INVALID_PARAM_VALUE", "message": "Your order size is too small"}
        return 400, (
            {"label": "BALANCE_NOT_ENOUGH", "message": "Not enough balance"}
            if self.market == "spot"
            else {"label": "INSUFFICIENT_AVAILABLE", "message": "insufficient available balance"}
        )


def _set_market(server: LoopbackExchange, price: str) -> None:
    """Move the venue's market to ``price``, and close its newest candle there.

    Ticks act at a bar's time (``now``), a wind-down (``stop()``, or a tick's fault that ends
    the session) at the real time, an hour after the newest candle opened: its price is that
    candle's close. Closing it at the market keeps the two in step, as on a venue, where the
    last close is where the market is. Ticks never read that close (each bar's tick reads the
    closed candles before it, and the bar's open)."""
    server.set_price(SYMBOL, price)
    frame = server.candles[SYMBOL]
    last, value = frame.index[-1], float(price)
    frame.loc[last, "close"] = value
    frame.loc[last, "high"] = max(frame.loc[last, "high"], value)
    frame.loc[last, "low"] = min(frame.loc[last, "low"], value)


@contextmanager
def _open_venue(plan: TrialPlan, candles: pd.DataFrame, key: str, secret: str) -> Iterator[_Venue]:
    """The trial's loopback venue, its market at the first bar's open; a child process moves
    it through ``PRICE_ROUTE``."""
    kind = Binance if plan.venue == "binance" else Gate
    served = candles.copy()  # its newest close follows the market (``_set_market``)
    served.attrs = dict(candles.attrs)
    server = kind(
        key,
        secret,
        {"USDT": BALANCE},
        futures_balances={"USDT": BALANCE},
        prices={SYMBOL: str(candles["open"].iloc[0])},
        candles={SYMBOL: served},
        visibility_delay=plan.visibility,
    )
    server.candles_through_now = True  # a trial may outlast the hour its candles end in

    def move(request: Request) -> Reply:
        _set_market(server, json.loads(request.body)["price"])
        return Reply(200, {})

    server.route("POST", PRICE_ROUTE, move)
    if plan.venue == "binance":
        answer_binance_key_restrictions(server, futures=True)
    else:
        answer_gate_key_permissions(server, {"spot": False, "futures": False}, ip_whitelist=("127.0.0.1",))
    with server:
        urls = server.config(plan.market)["urls"]["api"] if plan.venue == "binance" else server.api_urls()
        yield _Venue(server, plan.venue, plan.market, urls)


# -- crashes -----------------------------------------------------------------------------------


class _Crashes:
    """The tick's checkpoint hook: raise ``ProcessDied`` at the nth arrival at a point, once armed."""

    def __init__(self) -> None:
        self.armed: tuple[str, int] | None = None
        self.hits = 0
        self.fired: list[str] = []

    def arm(self, point: str, nth: int) -> None:
        self.armed, self.hits = (point, nth), 0

    def disarm(self) -> None:
        self.armed = None

    def __call__(self, name: str, leg: str | None = None) -> None:
        if self.armed is None or name != self.armed[0]:
            return
        self.hits += 1
        if self.hits == self.armed[1]:
            self.armed = None
            self.fired.append(f"{name} {leg or ''}".strip())
            raise ProcessDied(name)


@contextmanager
def _hooked(crashes: _Crashes) -> Iterator[None]:
    original = _tick.checkpoint
    _tick.checkpoint = crashes
    try:
        yield
    finally:
        _tick.checkpoint = original


# -- a trial -----------------------------------------------------------------------------------

_EXPECTED_TRANSIENT = (ExchangeUnavailable, RateLimited)
_LOCKED = "another tick of this session is running"


class _Trial:
    """One trial's session and what it went through: the faults it injects when, the ticks,
    the SIGKILLed child, the stop; expected failures go to ``events``, others to ``errors``."""

    def __init__(self, plan: TrialPlan, python: str) -> None:
        self.plan, self.python = plan, python
        self.result = TrialResult(plan.seed, plan.venue, plan.market, plan.template, plan.describe())
        self.crashes = _Crashes()
        self.rejected = False  # a reject was injected: an InvalidOrder and a session in error are expected
        self.resumed = False

    # the session
    def create(self, venue: _Venue, key: str, secret: str, candles: pd.DataFrame) -> int:
        plan = self.plan
        name = f"campaign {plan.seed} {secrets.token_hex(3)}"
        config = {"enableRateLimit": False, "timeout": int(TIMEOUT_S * 1000)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a loopback key is not IP-restricted on a real venue's terms
            account = wb.vault.add_account(
                plan.venue,
                key,
                secret,
                permissions="trade",
                label=name,
                ccxt_config={"urls": {"api": venue.urls}, **config},
            )
        wb.save_strategy(name, plan.template, plan.params)
        sid = wb.live.create_session(
            name,
            SYMBOLS[plan.market],
            exchange=plan.venue,
            account=account,
            market_type=plan.market,
            ccxt={"urls": venue.urls, "config": config},
            retry_max_wait=0.05,
            on_error=plan.on_error,
            order_visibility_wait=VISIBILITY_WAIT_S,
        )
        wb.live.start(sid)
        with store.session() as scope:  # trade the candles from their start (as tests/test_live.py does)
            scope.execute(
                text("UPDATE trading_sessions SET anchor_at = :a, history_from = :a WHERE id = :id"),
                {"a": candles.index[0].to_pydatetime(), "id": sid},
            )
        return sid

    # faults
    def inject(self, venue: _Venue, fault: Fault) -> None:
        server, detail, rng = venue.server, fault.detail, random.Random(f"{self.plan.seed}:{fault}")
        if fault.kind == "lose_send":
            server.lose_response(
                venue.order_path, method="POST", times=detail["times"], **venue.lost_body(detail["drop"])
            )
        elif fault.kind == "lose_cancel":
            for path in venue.cancel_paths:
                server.lose_response(path, method="DELETE", times=1)
        elif fault.kind in ("read_5xx", "read_429", "slow_read"):
            method, path = venue.read_paths[detail["path"] % len(venue.read_paths)]
            if fault.kind == "read_5xx":
                server.fail(
                    path,
                    detail["status"],
                    "Service Unavailable",
                    method=method,
                    times=detail["times"],
                    after=detail["after"],
                )
            elif fault.kind == "read_429":
                retry = f"{rng.choice(RETRY_AFTER_S):g}"
                body = (
                    {"code": -1003, "msg": "Too many requests."}
                    if venue.name == "binance"
                    else {"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"}
                )
                server.fail(
                    path,
                    429,
                    body,
                    method=method,
                    times=detail["times"],
                    after=detail["after"],
                    headers={"Retry-After": retry},
                )
            else:
                server.delay(path, SLOW_S, method=method, times=detail["times"])
        elif fault.kind == "slow_send":
            server.delay(venue.order_path, SLOW_S, method="POST", times=1)
        elif fault.kind == "partial":
            venue.book.partial_next(detail["fraction"])
        elif fault.kind == "visibility":
            venue.book.visibility_delay = detail["seconds"]
        elif fault.kind in ("reject_invalid", "reject_funds"):
            status, body = venue.reject(fault.kind)
            server.fail(venue.order_path, status, body, method="POST", times=1)
            self.rejected |= fault.kind == "reject_invalid"
        elif fault.kind == "crash":
            self.crashes.arm(detail["point"], detail["nth"])

    # ticking
    def tick(self, venue: _Venue, sid: int, candles: pd.DataFrame, bar: int) -> str:
        """Tick bar ``bar`` at its open: "done", "crashed" or "failed" (an exception the
        session counts)."""
        _set_market(venue.server, str(candles["open"].iloc[bar]))
        for _ in range(50):
            try:
                report = wb.live.tick(sid, now=candles.index[bar].to_pydatetime())
            except ProcessDied:
                self.result.events.append(f"crash at bar {bar} ({self.crashes.fired[-1]})")
                return "crashed"
            except Exception as exc:  # judged: expected faults, or an error of the engine
                self.judge(exc, f"tick of bar {bar}")
                # the next run comes an hour later on a venue: any Retry-After has long run out
                time.sleep(max(RETRY_AFTER_S))
                return "failed"
            if report.skipped != _LOCKED:  # a killed tick's connection may not be closed yet
                return "done"
            time.sleep(0.1)
        self.result.errors.append(f"bar {bar}: the session's tick lock stayed taken")
        return "failed"

    def judge(self, exc: BaseException, where: str) -> None:
        """An exception a tick or stop raised: expected under the injected faults, or an error."""
        what = f"{where}: {type(exc).__name__}: {exc}"
        unrouted = "404 Not Found no route" in str(exc)  # never injected: the venue lacks what the client asks
        expected = isinstance(exc, _EXPECTED_TRANSIENT) or (isinstance(exc, ExchangeError) and self.rejected)
        if expected and not unrouted:
            self.result.events.append(what[:300])
        else:
            self.result.errors.append(
                what[:500]
                + (
                    ""
                    if isinstance(exc, WorkbenchError)
                    else " | " + "".join(traceback.format_tb(exc.__traceback__)[-3:])
                )
            )

    def kill(self, venue: _Venue, sid: int, candles: pd.DataFrame, start: int, point: str, nth: int) -> int:
        """Tick bars from ``start`` in a child process that SIGKILLs itself at the nth arrival
        at ``point``; the first bar it did not complete."""
        bars = [
            (candles.index[b].isoformat(), str(candles["open"].iloc[b]))
            for b in range(start, min(start + 6, self.plan.settle_from))
        ]
        spec = {"sid": sid, "bars": bars, "point": point, "nth": nth, "price_url": venue.server.url + PRICE_ROUTE}
        done = subprocess.run(
            [self.python, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        completed = [line for line in done.stdout.splitlines() if line.startswith("done ")]
        for line in done.stdout.splitlines():
            if line.startswith("unexpected "):
                self.result.errors.append(f"child process: {line[len('unexpected ') :]}"[:500])
            elif line.startswith("expected "):
                self.result.events.append(f"child process: {line[len('expected ') :]}"[:300])
        if done.returncode == -signal.SIGKILL:
            self.result.events.append(f"SIGKILL at bar {start + len(completed)} ({point} #{nth})")
        elif done.returncode != 0:
            self.result.errors.append(f"child process exited {done.returncode}: {done.stderr[-400:]}")
        return start + len(completed)

    def run(self, venue: _Venue, sid: int, candles: pd.DataFrame) -> None:
        plan = self.plan
        faults = {b: [f for f in plan.faults if f.bar == b] for b in range(plan.bars)}
        bar = 1
        with _hooked(self.crashes):
            while bar < plan.bars:
                if bar == plan.settle_from:  # the faults end; the next runs heal
                    venue.server.clear_faults()
                    venue.book.visibility_delay = 0.0
                    self.crashes.disarm()
                    time.sleep(MAX_VISIBILITY_S)
                for fault in faults.pop(bar, []):
                    self.inject(venue, fault)
                if plan.kill is not None and plan.kill[0] == bar:
                    killed_at = self.kill(venue, sid, candles, bar, plan.kill[1], plan.kill[2])
                    plan = self.plan = replace(plan, kill=None)
                    bar = killed_at if plan.retry_after_crash else killed_at + 1
                    continue
                outcome = self.tick(venue, sid, candles, bar)
                if outcome == "crashed" and plan.retry_after_crash:
                    continue  # the same candle again, as a scheduler's retry
                if wb.live.status(sid).status == "error":
                    if not (plan.resume_after_error and not self.resumed):
                        break
                    self.resumed = True
                    self.result.events.append(f"resumed after: {wb.live.status(sid).message}"[:300])
                    wb.live.resume(sid)
                bar += 1
            if plan.stop_at_end:  # some time later the market has moved: resting orders may have filled
                _set_market(venue.server, str(candles["close"].iloc[-1]))
                self.stop(venue, sid)
        venue.server.clear_faults()
        if wb.live.status(sid).wind_down_pending:  # the session's next scheduled run tries it again
            try:
                report = wb.live.tick(sid)
                self.result.events.append(f"the next run: {report.skipped}"[:300])
            except Exception as exc:
                self.judge(exc, "the wind-down's next try")

    def stop(self, venue: _Venue, sid: int) -> None:
        """``stop()``, with the plan's fault during the wind-down; stopped again after a crash."""
        fault = self.plan.stop_fault
        if fault == "lose_send":
            venue.server.lose_response(
                venue.order_path, method="POST", times=1, **venue.lost_body(self.plan.seed % 2 == 0)
            )
            for path in venue.stop_paths:
                venue.server.lose_response(path, method="POST", times=1)
        elif fault == "read_5xx":
            method, path = venue.read_paths[self.plan.seed % len(venue.read_paths)]
            venue.server.fail(path, 503, "Service Unavailable", method=method, times=2)
        elif fault == "crash":
            self.crashes.arm(random.Random(self.plan.seed).choice(CHECKPOINTS), 1)
        elif fault in ("reject", "reject_funds"):  # the venue refuses the guard or flat order
            status, body = venue.reject("reject_invalid" if fault == "reject" else "reject_funds")
            for path in [venue.order_path, *venue.stop_paths]:
                venue.server.fail(path, status, body, method="POST", times=3)
        for _ in range(2):
            try:
                with _hooked(self.crashes):
                    wb.live.stop(sid)
                break
            except ProcessDied:
                self.result.events.append(f"crash in stop() ({self.crashes.fired[-1]})")
            except SessionError as exc:
                if "cannot go from stopped" in str(exc):
                    break
                self.judge(exc, "stop()")
                break
            except Exception as exc:
                self.judge(exc, "stop()")
                break
        venue.server.clear_faults()


# -- the invariants ----------------------------------------------------------------------------


def _check(result: TrialResult, plan: TrialPlan, venue: _Venue, sid: int) -> None:
    """Compare the venue's books with the database after the trial (see the module docstring)."""
    book, symbol = venue.book, SYMBOLS[plan.market]
    prefix = f"wb{sid}-"
    strip = "t-" if plan.venue == "gate" else ""
    stops = [s for s in getattr(venue.server, "stops", {}).values() if s.instrument.symbol in book.instruments]
    with book.lock:
        orders = [o for o in book.orders.values() if o.instrument.symbol == symbol]
        trades = [t for t in book.trades if t.order.instrument.symbol == symbol]
        held = book.balances.get("BTC", Decimal(0)) if plan.market == "spot" else book.position(symbol)[0]
    accepted: dict[str, set[int]] = {}
    # a stop that triggered is the order it placed (a Binance spot stop keeps its id; a Gate
    # futures stop's order carries its text)
    placed = [(s.client_id, s.actual.id if s.actual is not None else s.id) for s in stops]
    for cid, oid in [(o.client_id, o.id) for o in orders] + placed:
        cid = cid[len(strip) :] if strip and cid.startswith(strip) else cid
        if cid.startswith(prefix):
            accepted.setdefault(cid, set()).add(oid)
    twice = sorted(cid for cid, ids in accepted.items() if len(ids) > 1)
    result.duplicates = len(twice)
    if twice:
        result.details.append(f"executed more than once: {', '.join(twice[:5])}")
    result.orders, result.fills = len(accepted), len(trades)

    with store.session() as scope:
        session = scope.scalars(select(store.TradingSession).where(store.TradingSession.id == sid)).one()
        result.status, result.message = session.status, session.status_message or ""
        rows = scope.execute(
            select(
                store.Fill.exchange_trade_id,
                store.Order.side,
                store.Fill.amount,
                store.Fill.fee,
                store.Fill.fee_currency,
            )
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == sid)
        ).all()
        offset = Decimal(session.settings.get("position_offset", "0"))
    on_venue = {str(t.id) for t in trades}
    recorded = [r.exchange_trade_id for r in rows]
    missing, phantom = on_venue - set(recorded), set(recorded) - on_venue
    twice_recorded = len(recorded) - len(set(recorded))
    result.lost_fills = len(missing) + len(phantom) + twice_recorded
    if missing:
        lost = [t for t in trades if str(t.id) in missing]
        result.details.append(
            "venue trades not recorded: "
            + ", ".join(f"{t.id} ({t.order.client_id} {t.order.side} {t.amount})" for t in lost[:5])
        )
    if phantom or twice_recorded:
        result.details.append(
            f"recorded fills the venue does not have: {sorted(phantom)[:5]}, recorded twice: {twice_recorded}"
        )

    base_fee = plan.market == "spot"
    ledger = sum(
        (
            (r.amount if r.side == "buy" else -r.amount) - (r.fee if base_fee and r.fee_currency == "BTC" else 0)
            for r in rows
        ),
        Decimal(0),
    )
    if abs((held - offset) - ledger) > Decimal("1e-8"):
        result.ledger_mismatch = 1
        result.details.append(f"venue position {held - offset:f}, recorded fills make {ledger:f}")

    if result.status in ("error", "stopped") and plan.on_error != "leave":
        step, min_cost = DUST[(plan.venue, plan.market)]
        price = book.prices[symbol]
        position = held - offset
        closing = "sell" if position > 0 else "buy"
        covered = sum((s.amount for s in stops if s.status == "open" and s.side == closing), Decimal(0))
        dust = abs(position) < step or abs(position) * price < min_cost
        refused = plan.stop_fault in ("reject", "reject_funds") and "could NOT be secured" in result.message
        if position and not dust and covered < abs(position) - step and refused:
            result.events.append(f"the venue refused to secure {position:f}, and the session says so")
        elif position and not dust and covered < abs(position) - step:
            result.unprotected = 1
            result.details.append(
                f"{result.status} holding {position:f} with {covered:f} under resting stops "
                f"(on_error {plan.on_error}): {result.message[:300]}"
            )
    if getattr(venue.server, "bans", None):
        result.errors.append(
            f"the venue banned the client {len(venue.server.bans)}x (418): it came back before "
            "a 429's Retry-After ran out"
        )
    handler_errors: dict[str, int] = {}
    for err in venue.server.errors:
        handler_errors[repr(err)[:200]] = handler_errors.get(repr(err)[:200], 0) + 1
    result.errors.extend(f"loopback handler failed {n}x: {err}" for err, n in handler_errors.items())
    if not result.ok:
        result.trace = _trace(venue, orders, stops, trades, sid)


def _trace(venue: _Venue, orders: list, stops: list, trades: list, sid: int) -> list[str]:
    """The venue's orders, stops and trades and the database's orders, to replay a broken trial by."""
    lines = [
        f"venue order {o.id} {o.client_id} {o.side} {o.type} {o.amount} @ {o.price} filled {o.filled} "
        f"{o.status} created {o.created_ms}"
        for o in orders
    ]
    lines += [f"venue stop {s.id} {s.client_id} {s.side} {s.amount} trigger {s.trigger} {s.status}" for s in stops]
    lines += [
        f"venue trade {t.id} of {t.order.id} {t.order.side} {t.amount} @ {t.price} fee {t.fee} {t.fee_asset} "
        f"at {t.time_ms}"
        for t in trades
    ]
    with store.session() as scope:
        rows = scope.scalars(select(store.Order).where(store.Order.session_id == sid).order_by(store.Order.id)).all()
        fills = scope.execute(
            select(store.Fill.exchange_trade_id, store.Order.client_order_id)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == sid)
        ).all()
        lines += [
            f"db order {r.client_order_id} -> {r.exchange_order_id} {r.side} {r.type} {r.amount} filled "
            f"{r.filled} {r.status} ({r.resolution})"
            for r in rows
        ]
    lines += [f"db fill {f.exchange_trade_id} of {f.client_order_id}" for f in fills]
    return lines


def run_trial(seed: int, *, bars: int = 30, kill_fraction: float = 0.1, python: str = sys.executable) -> TrialResult:
    """Run the trial of ``seed`` against the configured database; what its invariants found.

    ``bars``: bars in the trial (the last four heal without faults); ``kill_fraction``: the
    share of seeds whose trial SIGKILLs a child process ticking the session; ``python``: the
    interpreter of that child (with workbench importable)."""
    plan = plan_trial(seed, bars=bars, kill_fraction=kill_fraction)
    started = time.monotonic()
    trial = _Trial(plan, python)
    key, secret = f"CAMPAIGN{secrets.token_hex(8)}", f"CAMPAIGNSECRET{secrets.token_hex(16)}"
    candles = _candles(plan.offset, plan.bars)
    try:
        with _open_venue(plan, candles, key, secret) as venue:
            sid = trial.create(venue, key, secret, candles)
            try:
                trial.run(venue, sid, candles)
            except Exception as exc:
                trial.result.errors.append(
                    f"the trial itself failed: {type(exc).__name__}: {exc} | "
                    + "".join(traceback.format_tb(exc.__traceback__)[-4:])
                )
            _check(trial.result, plan, venue, sid)
    except Exception as exc:  # setting the trial up failed: an error like any other
        trial.result.errors.append(f"setup: {type(exc).__name__}: {exc}")
    trial.result.seconds = time.monotonic() - started
    return trial.result


# -- the child process of a SIGKILL trial, and replaying one seed ---------------------------------


def _child(spec: dict[str, Any]) -> None:
    """Tick ``spec["bars"]`` (moving the loopback's market first); SIGKILL this process at
    the ``nth`` arrival at checkpoint ``point``."""
    import urllib.request

    hits = {"n": 0}

    def checkpoint(name: str, leg: str | None = None) -> None:
        if name == spec["point"]:
            hits["n"] += 1
            if hits["n"] == spec["nth"]:
                os.kill(os.getpid(), signal.SIGKILL)

    _tick.checkpoint = checkpoint
    for when, price in spec["bars"]:
        request = urllib.request.Request(spec["price_url"], data=json.dumps({"price": price}).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()
        for _ in range(50):
            try:
                report = wb.live.tick(spec["sid"], now=datetime.fromisoformat(when))
            except (ExchangeError, InvalidOrder) as exc:
                print(f"expected {when}: {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
                time.sleep(max(RETRY_AFTER_S))
                break
            except Exception as exc:
                print(f"unexpected {when}: {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
                break
            if report.skipped != _LOCKED:
                break
            time.sleep(0.1)
        print(f"done {when}", flush=True)


def _replay(seeds: list[int]) -> int:
    """Run the trials of ``seeds`` in a fresh WORKBENCH_HOME (its own embedded PostgreSQL)."""
    import tempfile

    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-campaign-")
    for variable in ("DATABASE_URL", "WORKBENCH_DATABASE_URL", "WORKBENCH_TENANT_DATABASE_URL"):
        os.environ.pop(variable, None)
    failed = 0
    try:
        with store.session():  # migrate, create the tenant
            pass
        for seed in seeds:
            result = run_trial(seed)
            failed += not result.ok
            print(result.summary(), f"({result.seconds:.1f} s)")
            print(f"    final status message: {result.message}")
            for event in result.events:
                print("   ", event)
            for line in result.trace:
                print("      ", line)
    finally:
        store.dispose()
        store.embedded_server().stop()
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(json.loads(sys.argv[2]))
    else:
        sys.exit(_replay([int(seed) for seed in sys.argv[1:]] or [0]))
