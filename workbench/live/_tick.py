"""``tick(session_id)``: one step of a live session, safe to crash anywhere and run again.

In order: take the session's lock (a PostgreSQL advisory lock: one tick of a session at a
time) and do nothing unless it is ``running``; open its exchange; fetch the closed candles
and the forming candle's open; plan the forming bar with the strategy's kernel
(``_plan``); reconcile with the exchange (refresh our orders, cancel those left from
earlier candles, read the position and balance); check the risk limits; send the legs;
record fills, balance, PnL and an equity snapshot, and mark the candle done.

Exactly once: each leg has a client order id made of the session, the candle and the leg,
and its order row is committed (status ``new``) before it is sent. A leg with a row and an
exchange id was placed; a row without one may or may not have reached the exchange, so the
exchange is asked (``fetch_order_by_client_id``) before anything is sent again, and a
``DuplicateOrder`` answer is resolved the same way. Whether the position needs a catch-up
("sync" leg) is judged on the position without this candle's own fills, so a retried tick
decides as the first attempt did. Transient exchange faults are retried with back-off
(``tenacity``); a tick that still fails counts, and ``max_failures`` failures in a row, or
any fault retrying cannot fix (keys, funds, a rejected order), put the session in ``error``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import func, select, update
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from workbench import store
from workbench.data._timeframe import parse_timeframe
from workbench.errors import (DuplicateOrder, ExchangeError, ExchangeUnavailable, InvalidOrder, OrderNotFound,
                              RateLimited, RiskLimitBreached, VaultError)
from workbench.exchange import Order
from workbench.live import _ledger, _risk, _sessions, _venue
from workbench.live._plan import Leg, Plan, plan

_log = logging.getLogger("workbench.live")
_LOCK_CLASS = 0x77626C76  # "wblv": advisory locks of live sessions, keyed by session id
_TRANSIENT = (ExchangeUnavailable, RateLimited)
_PAGE = 1000  # candles per fetch_ohlcv call
T = TypeVar("T")


@dataclass
class TickReport:
    """What one tick did."""

    session_id: int
    status: str
    candle: datetime | None = None  # the forming candle the tick traded
    skipped: str | None = None  # why nothing was done
    placed: list[str] = field(default_factory=list)  # client order ids sent by this tick
    canceled: list[str] = field(default_factory=list)
    emulated: list[str] = field(default_factory=list)  # legs of order types the exchange lacks
    fills: int = 0  # fills recorded for the first time
    position: Decimal | None = None
    equity: Decimal | None = None
    message: str | None = None


def checkpoint(point: str, leg: str | None = None) -> None:
    """A named moment of a tick ("intent_recorded", "before_send", "after_send",
    "after_write", "fills_recorded"); tests replace this function to crash there."""


def tick(session_id: int, *, now: datetime | None = None) -> TickReport:
    """Run one tick of a session (what a promoted notebook calls on every closed candle).

    ``now``: the time to act at (default: the exchange's clock; for a paper session the
    candle after its last completed tick, so each tick replays one more candle).
    """
    with _exclusive(session_id) as db:
        if db is None:
            return TickReport(session_id, "running", skipped="another tick of this session is running")
        with db() as scope:
            row = _sessions._row(scope, session_id)
        if row.status != "running":
            return TickReport(session_id, row.status, skipped=f"the session is {row.status}")
        step = _Tick(row, now, db)
        try:
            report = step.run()
        except RiskLimitBreached:  # handled: the report says what was done about it
            return step.report
        except (ExchangeError, VaultError) as exc:
            _failed(db, row, exc, final=not isinstance(exc, _TRANSIENT))
            raise
        except Exception as exc:
            _failed(db, row, exc, final=False)
            raise
        _log.info("session %s tick %s: %s placed, %s canceled, %s fills", session_id, report.candle,
                  len(report.placed), len(report.canceled), report.fills)
        return report


@contextmanager
def _exclusive(session_id: int) -> Iterator[_ledger.Db | None]:
    """Hold the session's advisory lock for the block, on a connection of its own (so the
    server releases it when the process dies); yields how to open transactions as this
    tenant, or None when another tick holds the lock."""
    with store.session() as scope:
        engine = scope.get_bind()
    with engine.connect() as connection:  # the whole tick's work runs on it, one transaction at a time
        if not connection.scalar(select(func.pg_try_advisory_lock(_LOCK_CLASS, session_id))):
            yield None
            return
        connection.commit()
        try:
            yield partial(store.session_scope, connection)
        finally:
            connection.rollback()
            connection.scalar(select(func.pg_advisory_unlock(_LOCK_CLASS, session_id)))
            connection.commit()


def _failed(db: _ledger.Db, row, exc: BaseException, *, final: bool) -> None:
    """Count a failed tick; ``final`` faults, or too many in a row, end in ``error``."""
    with db() as scope:
        failures = scope.scalar(update(store.TradingSession).where(store.TradingSession.id == row.id)
                                .values(failed_ticks=store.TradingSession.failed_ticks + 1)
                                .returning(store.TradingSession.failed_ticks))
    limit = int(row.settings.get("max_failures", 3))
    detail = f"{type(exc).__name__}: {exc}"
    if final or failures >= limit:
        why = "it cannot succeed by retrying" if final else f"{failures} ticks in a row failed"
        _sessions.mark_error(row.id, f"stopped trading because {why}; last error: {detail}", db)
    _log.warning("session %s: tick failed (%s of %s in a row): %s", row.id, failures, limit, detail)


class _Tick:
    def __init__(self, row, now: datetime | None, db: _ledger.Db) -> None:
        self.row, self.now, self.db = row, now, db
        self.settings: dict[str, Any] = dict(row.settings)
        with db() as scope:
            self.strategy = scope.get(store.Strategy, row.strategy_id)
        self.step = parse_timeframe(row.timeframe)
        self.paper = row.exchange == _venue.PAPER
        self.report = TickReport(row.id, "running")
        self.mine: dict[str, store.Order] = {}  # this candle's order rows by client order id
        self._retrying = Retrying(retry=retry_if_exception_type(_TRANSIENT), wait=self._wait, reraise=True,
                                  stop=stop_after_attempt(int(self.settings.get("retry_attempts", 4))))

    def _wait(self, retry_state) -> float:
        """Back off exponentially, or as long as a rate limit asks, within ``retry_max_wait``."""
        asked = getattr(retry_state.outcome.exception(), "retry_after", None)
        backoff = 0.5 * 2 ** (retry_state.attempt_number - 1)
        return min(float(self.settings.get("retry_max_wait", 30.0)), asked if asked is not None else backoff)

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._retrying(function, *args, **kwargs)

    # -- the steps ------------------------------------------------------------------------
    def run(self) -> TickReport:
        row = self.row
        candle = self._paper_candle() if self.paper else None
        with _venue.open_venue(row.id, row.exchange, row.exchange_account_id, row.market_type, row.timeframe,
                               self.settings, candle if self.paper else self.now, self.db,
                               since=self._settled()) as exchange:
            self.exchange = exchange
            if candle is None:
                candle = pd.Timestamp(self.now or exchange.now()).floor(self.step).to_pydatetime()
            self.candle = self.report.candle = candle
            if row.last_tick_at is not None and candle <= row.last_tick_at:
                self.report.skipped = f"the candle of {candle} was ticked already"
                return self.report
            self.market = exchange.market(row.symbol)
            if self.paper and exchange.clock.finished:  # record the last bar's fills, then stop
                self._record(self._call(exchange.fetch_price, row.symbol, row.timeframe))
                self._cancel_pending()
                self._finish_replay()
                return self.report
            if row.last_tick_at is None and self.market.type == "swap":
                self._call(exchange.set_leverage, row.symbol, int(row.leverage))
            price = self._call(exchange.fetch_price, row.symbol, row.timeframe)
            the_plan = self._plan(price)
            legs = [leg for leg in self._reconcile(the_plan, price) if not self._placed(leg)]
            equity, _, position = self._account(price)
            self._check_risk(legs, position, equity, price)
            for leg in legs:
                self._place(leg)
            self._record(price)
        return self.report

    def _settled(self) -> datetime:
        """Everything before the last completed tick's candle is recorded (a margin of a day)."""
        return (pd.Timestamp(self.row.last_tick_at or self.row.anchor_at) - pd.Timedelta(days=1)).to_pydatetime()

    def _paper_candle(self) -> datetime:
        if self.now is not None:
            return pd.Timestamp(self.now).floor(self.step).to_pydatetime()
        last = self.row.last_tick_at or self.row.anchor_at
        return (pd.Timestamp(last) + self.step).to_pydatetime()

    def _finish_replay(self) -> None:
        with self.db() as scope:
            scope.execute(update(store.TradingSession).where(store.TradingSession.id == self.row.id,
                                                             store.TradingSession.status == "running")
                          .values(status="stopped", status_message="the replay reached the end of its candles"))
        self.report.status, self.report.skipped = "stopped", "the replay reached the end of its candles"

    def _candles(self) -> pd.DataFrame:
        """Every closed candle from the session's warm-up start to the forming one, page by page."""
        frames, since = [], pd.Timestamp(self.row.history_from)
        while True:
            page = self._call(self.exchange.fetch_ohlcv, self.row.symbol, self.row.timeframe,
                              since.to_pydatetime(), _PAGE)
            page = page[page.index < pd.Timestamp(self.candle)]
            if len(page):
                frames.append(page)
            if len(page) < _PAGE - 1:
                break
            since = page.index[-1] + self.step
        candles = pd.concat(frames) if frames else page
        candles = candles[~candles.index.duplicated()]
        candles.attrs = dict(page.attrs)
        return candles

    def _plan(self, price: Decimal) -> Plan:
        candles = self._candles()
        if not len(candles) or candles.index[-1] != pd.Timestamp(self.candle) - self.step:
            got = candles.index[-1] if len(candles) else "none"
            raise ExchangeUnavailable(f"session #{self.row.id}: the exchange has no closed {self.row.timeframe} "
                                      f"candle before {self.candle} yet (newest: {got}); try again shortly")
        if self.paper:
            fees, slippage = self.settings.get("fees", 0.001), float(self.settings.get("slippage", 0.0005))
        else:
            taker = float(self.market.taker_fee or 0.001)
            fees, slippage = {"maker": float(self.market.maker_fee or taker), "taker": taker}, float(
                self.settings.get("slippage", 0.0005))
        fees = fees if isinstance(fees, dict) else {"maker": fees, "taker": fees}
        return plan(self.strategy.template, self.strategy.params, self.strategy.risk_limits, candles,
                    self.row.anchor_at, self.candle, float(price), float(self.row.init_equity), fees=fees,
                    slippage=slippage)

    def _reconcile(self, the_plan: Plan, price: Decimal) -> list[Leg]:
        """Settle our orders of earlier candles (cancel what still rests: each candle plans its
        own), refresh this candle's (a retried tick), and add a "sync" leg when the position
        without this candle's fills is not the simulation's."""
        symbol = self.row.symbol
        for row in _ledger.orders(self.db, self.row.id, pending=True):
            found = self._call(self.exchange.fetch_order_by_client_id, symbol, row.client_order_id)
            if row.candle_at != self.candle and found is not None and found.status == "open":
                try:
                    found = self._call(self.exchange.cancel_order, symbol, found.id)
                    self.report.canceled.append(row.client_order_id)
                except OrderNotFound:  # it filled or lapsed meanwhile
                    found = self._call(self.exchange.fetch_order_by_client_id, symbol, row.client_order_id)
            if found is not None:
                _ledger.record_order(self.db, self.row.id, row.client_order_id, found)
            elif row.candle_at != self.candle:  # written, never accepted, and its candle is gone
                _ledger.record_order(self.db, self.row.id, row.client_order_id, None, status="expired")
        self.mine = {row.client_order_id: row for row in _ledger.orders(self.db, self.row.id, candle=self.candle)}
        position = self._position()
        done_now = sum((r.filled if r.side == "buy" else -r.filled for r in self.mine.values()), Decimal(0))
        gap = Decimal(repr(the_plan.units)) - (position - done_now)
        legs = list(the_plan.legs)
        if gap and self._tradeable(abs(gap), price):
            reduces = position and (gap > 0) != (position > 0) and abs(gap) <= abs(position)
            legs.insert(0, Leg("sync", "market", "buy" if gap > 0 else "sell", abs(gap), price, bool(reduces)))
        return legs

    def _tradeable(self, amount: Decimal, price: Decimal) -> bool:
        try:
            self.exchange.normalize_order(self.row.symbol, amount, price, type="market")
        except InvalidOrder:
            return False
        return True

    def _position(self) -> Decimal:
        """The session's own position: the account's, less what it held before the session."""
        held = self._call(self.exchange.fetch_position, self.row.symbol).size
        return held - Decimal(self.settings.get("position_offset", "0"))

    def _account(self, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """(equity, quote balance, position) of the session, marked at ``price``."""
        currency = self.market.settle or self.market.quote
        balance = self._call(self.exchange.fetch_balance).get(currency)
        total = balance.total if balance else Decimal(0)
        position = self._position()
        if self.market.type == "swap":
            held = self._call(self.exchange.fetch_position, self.row.symbol)
            entry = held.entry_price or price
            equity = total + held.size * (price - entry)
        else:
            equity = total + position * price
        # the session's share of a bigger account (``capital``)
        return equity - Decimal(self.settings.get("equity_offset", "0")), total, position

    def _check_risk(self, legs: list[Leg], position: Decimal, equity: Decimal, price: Decimal) -> None:
        limits = self.strategy.risk_limits
        midnight = pd.Timestamp(self.candle).floor("1D").to_pydatetime()
        try:
            _risk.check(position=position, equity=equity,
                        day_start=_ledger.day_start_equity(self.db, self.row.id, midnight),
                        legs=legs, leverage=Decimal(self.row.leverage),
                        max_leverage=Decimal(str(self.settings.get("max_leverage", self.row.leverage))),
                        max_position_size=limits.get("max_position_size"),
                        max_daily_loss=limits.get("max_daily_loss"), currency=self.market.settle or self.market.quote)
        except RiskLimitBreached as breach:
            self._breach(breach, position, price)
            raise

    def _breach(self, breach: RiskLimitBreached, position: Decimal, price: Decimal) -> None:
        """Stop new orders: cancel ours, flatten when the session says so, record, go to ``error``."""
        self._cancel_pending()
        message = f"{breach}; new orders stopped"
        if self.settings.get("flatten_on_breach", True) and position and self._tradeable(abs(position), price):
            self._place(Leg("flat", "market", "sell" if position > 0 else "buy", abs(position), price, True))
            message += f", position of {position:g} closed at market"
        self.report.status, self.report.message = "error", message
        self._record(price)
        _sessions.mark_error(self.row.id, message, self.db)
        _log.warning("session %s: %s", self.row.id, message)

    def _cancel_pending(self) -> None:
        """Cancel every order of ours still resting; settle the records of the others."""
        for row in _ledger.orders(self.db, self.row.id, pending=True):
            found = self._call(self.exchange.fetch_order_by_client_id, self.row.symbol, row.client_order_id)
            if found is not None and found.status == "open":
                found = self._call(self.exchange.cancel_order, self.row.symbol, found.id)
                self.report.canceled.append(row.client_order_id)
            _ledger.record_order(self.db, self.row.id, row.client_order_id, found,
                                 status=None if found else "expired")

    # -- exactly once ---------------------------------------------------------------------
    def _placed(self, leg: Leg) -> bool:
        """Whether an earlier attempt of this tick placed (or settled) the leg already."""
        row = self.mine.get(_ledger.client_id(self.row.id, self.candle, leg.name))
        return row is not None and (row.exchange_order_id is not None or row.status != "new")

    def _place(self, leg: Leg) -> None:
        if leg.type not in self.exchange.order_types:
            self.report.emulated.append(leg.name)  # e.g. a stop: the next tick's sync leg closes instead
            return
        cid = _ledger.client_id(self.row.id, self.candle, leg.name)
        row = self.mine.get(cid)
        try:
            amount, price = self.exchange.normalize_order(self.row.symbol, self._affordable(leg), leg.price,
                                                          type=leg.type)
        except InvalidOrder as exc:
            self.report.emulated.append(f"{leg.name} (not sent: {exc})")
            return
        if row is None:
            _ledger.record_intent(self.db, self.row.id, self.candle, leg, cid, amount, price)
            checkpoint("intent_recorded", leg.name)
        reduce_only = leg.reduce_only and (self.paper or self.market.type == "swap")
        order = self._ensure(cid, lambda: self.exchange.create_order(
            self.row.symbol, leg.side, leg.type, amount, price, client_order_id=cid, reduce_only=reduce_only),
            sent_before=row is not None)
        checkpoint("after_send", leg.name)
        _ledger.record_order(self.db, self.row.id, cid, order)
        checkpoint("after_write", leg.name)
        self.report.placed.append(cid)

    def _affordable(self, leg: Leg) -> Decimal:
        """The leg's amount, cut to what the account has when it differs from the simulation
        (e.g. after fills away from its prices): an exit to the position, an entry to what the
        free balance pays for."""
        if leg.reduce_only or (leg.side == "sell" and self.market.type == "spot"):
            held = abs(self._position())
            if leg.amount > held:
                self.report.emulated.append(f"{leg.name} (cut from {leg.amount:g} to the position {held:g})")
            return min(leg.amount, held)
        free = self._call(self.exchange.fetch_balance).get(self.market.settle or self.market.quote)
        fee = max(self.market.maker_fee or Decimal(0), self.market.taker_fee or Decimal(0))
        slipped = 1 + Decimal(str(self.settings.get("slippage", 0))) if leg.type == "market" else 1
        unit_cost = leg.price * slipped * (1 / Decimal(self.row.leverage) + fee)
        available = free.free if free else Decimal(0)
        if leg.amount * unit_cost <= available * (1 + _risk.TOLERANCE):
            return leg.amount
        self.report.emulated.append(f"{leg.name} (cut from {leg.amount:g} to what {available:.2f} pays for)")
        if available <= Decimal(self.row.init_equity) * _risk.TOLERANCE:  # dust, as the kernel sees it
            return Decimal(0)
        return available * (1 - _risk.TOLERANCE) / unit_cost

    def _ensure(self, cid: str, send: Callable[[], Order], *, sent_before: bool) -> Order:
        """The order under ``cid``, sent at most once: whenever an earlier send may have reached
        the exchange (a crashed attempt, a timeout, a lost response), ask first."""
        for attempt in self._retrying:
            with attempt:
                if sent_before or attempt.retry_state.attempt_number > 1:
                    found = self.exchange.fetch_order_by_client_id(self.row.symbol, cid)
                    if found is not None:
                        return found
                checkpoint("before_send", cid)
                try:
                    return send()
                except DuplicateOrder:
                    found = self.exchange.fetch_order_by_client_id(self.row.symbol, cid)
                    if found is None:
                        raise
                    return found
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    # -- records --------------------------------------------------------------------------
    def _record(self, price: Decimal) -> None:
        since = _ledger.last_fill_at(self.db, self.row.id) or self.row.anchor_at
        fills = self._call(self.exchange.fetch_my_trades, self.row.symbol, since)
        self.report.fills = _ledger.record_fills(self.db, self.row.id, fills, adopt=self.paper)
        checkpoint("fills_recorded")
        equity, balance, position = self._account(price)
        pnl = equity - Decimal(self.row.init_equity)
        _ledger.snapshot(self.db, self.row.id, self.candle, balance, equity, position, pnl)
        with self.db() as scope:
            values = {"current_balance": balance, "total_pnl": pnl, "failed_ticks": 0}
            if self.report.status == "running":
                values["last_tick_at"] = self.candle
            scope.execute(update(store.TradingSession).where(store.TradingSession.id == self.row.id).values(**values))
        self.report.equity, self.report.position = equity, position
