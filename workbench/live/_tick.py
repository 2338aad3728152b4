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
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy import cast, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_any

from workbench import store
from workbench.data import parse_timeframe
from workbench.errors import (
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    RiskLimitBreached,
    VaultError,
)
from workbench.exchange import Balance, Fill, Order, capability
from workbench.live import _ledger, _risk, _sessions, _venue
from workbench.live._plan import Leg, Plan, plan

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Engine

    from workbench.exchange import PaperExchange

_log = logging.getLogger("workbench.live")
_LOCK_CLASS = 0x77626C76  # "wblv": advisory locks of live sessions, keyed by session id
_HALT_CLASS = 0x77626C68  # "wblh": held by stop() and pause() while they wait for a tick to give way
_TRANSIENT = (ExchangeUnavailable, RateLimited)
_PAGE = 1000  # candles per fetch_ohlcv call
_CLOCK_MARGIN = pd.Timedelta(minutes=5)  # history queries start this much earlier (clocks differ)
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
    funding: int = 0  # funding payments recorded for the first time (perpetuals)
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
            if row.wind_down_pending and row.status in ("stopped", "error"):
                return retry_wind_down(db, session_id)
            return TickReport(session_id, row.status, skipped=f"the session is {row.status}")
        if _halting(db, session_id):
            return TickReport(session_id, row.status, skipped=_HALTING)
        step = _Tick(row, now, db)
        try:
            report = step.run()
        except (RiskLimitBreached, _Halted):  # handled: the report says what was done about it
            return step.report
        except (ExchangeError, VaultError) as exc:
            _failed(db, row, exc, final=not isinstance(exc, _TRANSIENT))
            raise
        except Exception as exc:
            _failed(db, row, exc, final=False)
            raise
        _log.info(
            "session %s tick %s: %s placed, %s canceled, %s fills",
            session_id,
            report.candle,
            len(report.placed),
            len(report.canceled),
            report.fills,
        )
        return report


class _LongRateLimit:
    """Give up at once when a venue asks for a longer wait than ``retry_max_wait``: the tick
    fails and the next scheduled run comes after the wait, instead of a run sitting idle."""

    def __init__(self, longest: float) -> None:
        self.longest = longest

    def __call__(self, retry_state) -> bool:
        asked = getattr(retry_state.outcome.exception(), "retry_after", None)
        return asked is not None and float(asked) > self.longest


class _Halted(Exception):
    """The tick gave way: its session is being stopped or paused, or its market does not trade."""


_HALTING = "the session is being stopped or paused"


def _halting(db: _ledger.Db, session_id: int) -> bool:
    """Whether ``stop()`` or ``pause()`` waits for this session's tick (it holds the halt lock)."""
    with db() as scope:
        return not scope.scalar(select(func.pg_try_advisory_xact_lock_shared(_HALT_CLASS, session_id)))


@contextmanager
def halted(session_id: int, *, wait: float, opener: Callable[[], Any] | None = None) -> Iterator[_ledger.Db | None]:
    """What ``stop()`` and ``pause()`` run in: tell a running tick to give way (it checks before
    every order it sends), wait up to ``wait`` seconds for it to end, then hold the tick's own
    lock for the block, so no tick runs meanwhile; None when the tick did not end in time."""
    with (opener or store.session)() as scope:
        engine = typing.cast("Engine", scope.get_bind())  # sessions are bound to an engine, not a connection
    with engine.connect() as connection:
        connection.scalar(select(func.pg_advisory_lock(_HALT_CLASS, session_id)))
        connection.commit()
        try:
            with _exclusive(session_id, wait=wait, opener=opener) as db:
                yield db
        finally:
            connection.scalar(select(func.pg_advisory_unlock(_HALT_CLASS, session_id)))
            connection.commit()


@contextmanager
def _exclusive(
    session_id: int, *, wait: float | None = None, opener: Callable[[], Any] | None = None
) -> Iterator[_ledger.Db | None]:
    """Hold the session's advisory lock for the block, on a connection of its own (so the
    server releases it when the process dies); yields how to open transactions as this
    tenant, or None when another tick holds the lock (for longer than ``wait`` seconds)."""
    with (opener or store.session)() as scope:
        engine = typing.cast("Engine", scope.get_bind())  # sessions are bound to an engine, not a connection
    with engine.connect() as connection:  # the whole tick's work runs on it, one transaction at a time
        if not _lock(connection, session_id, wait):
            yield None
            return
        try:
            yield partial(store.session_scope, connection)
        finally:
            connection.rollback()
            connection.scalar(select(func.pg_advisory_unlock(_LOCK_CLASS, session_id)))
            connection.commit()


def _lock(connection, session_id: int, wait: float | None) -> bool:
    """Take the tick lock now (``wait`` None) or within ``wait`` seconds (PostgreSQL's lock_timeout)."""
    if wait is None:
        got = bool(connection.scalar(select(func.pg_try_advisory_lock(_LOCK_CLASS, session_id))))
        connection.commit()
        return got
    connection.execute(text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": f"{max(1, int(wait * 1000))}ms"})
    try:
        connection.scalar(select(func.pg_advisory_lock(_LOCK_CLASS, session_id)))
        got = True
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        got = False
    connection.rollback()
    connection.execute(text("RESET lock_timeout"))
    connection.commit()
    return got


def wind_down(db: _ledger.Db, session_id: int, policy: str | None = None) -> str:
    """Cancel the session's resting orders on the exchange and leave its position as ``policy``
    says (default the session's ``on_error``); what was done, in words (the caller holds the
    tick lock). When the position could not be secured (the exchange unreachable, or refusing
    the order), the policy stays in ``wind_down_pending``: the scheduler keeps running the
    session's notebook, and every later tick tries again until it is."""
    with db() as scope:
        row = _sessions._row(scope, session_id)
    if row.started_at is None:
        return "it never traded"
    step = _Tick(row, None, db)
    policy = policy or step.settings.get("on_error", "protect")
    try:
        outcome = step.wind_down(policy)
    except (ExchangeError, VaultError) as exc:
        done = f"{len(step.report.canceled)} open orders cancelled, " if step.report.canceled else ""
        outcome = (
            f"{done}its orders and position could NOT be secured on the exchange (check them there): "
            f"{type(exc).__name__}: {exc}"
        )
        step.secured = False
    with db() as scope:
        scope.execute(
            update(store.TradingSession)
            .where(store.TradingSession.id == session_id)
            .values(wind_down_pending=None if step.secured else policy)
        )
    return outcome if step.secured else f"{outcome}; tried again on every scheduled run until it is secured"


def retry_wind_down(db: _ledger.Db, session_id: int) -> TickReport:
    """A stopped or failed session whose wind-down left its position unsecured: try again (the
    caller holds the tick lock); when it succeeds, the status message says so and the user is told."""
    with db() as scope:
        row = _sessions._row(scope, session_id)
    outcome = wind_down(db, session_id, row.wind_down_pending)
    with db() as scope:
        fresh = _sessions._row(scope, session_id, lock=True)
        secured = fresh.wind_down_pending is None
        if secured:
            fresh.status_message = f"{fresh.status_message}; secured on a later try: {outcome}"[:2000]
    if secured:
        _notify(
            db,
            session_id,
            f"session #{session_id} ({row.status}): secured on a later try: {outcome}",
            key=f"wind-down-secured-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        )
    return TickReport(
        session_id, row.status, skipped=f"the session is {row.status}; its wind-down was tried again: {outcome}"
    )


def _notify(db: _ledger.Db, session_id: int, text: str, *, key: str) -> None:
    """Tell the user's channels (a ``message`` event of the session, once per ``key``)."""
    _log.warning("session %s: %s", session_id, text)
    with db() as scope:
        scope.execute(
            select(
                func.notification_emit_quietly(
                    func.current_tenant_id(), session_id, "message", key, cast({"text": text[:4000]}, JSONB)
                )
            )
        )


def _failed(db: _ledger.Db, row, exc: BaseException, *, final: bool) -> None:
    """Count a failed tick; ``final`` faults, or too many in a row, end in ``error``."""
    with db() as scope:
        failures = typing.cast(
            int,
            scope.scalar(
                update(store.TradingSession)
                .where(store.TradingSession.id == row.id)
                .values(failed_ticks=store.TradingSession.failed_ticks + 1)
                .returning(store.TradingSession.failed_ticks)
            ),
        )
    limit = int(row.settings.get("max_failures", 3))
    detail = f"{type(exc).__name__}: {exc}"
    if final or failures >= limit:
        why = "it cannot succeed by retrying" if final else f"{failures} ticks in a row failed"
        secured = wind_down(db, row.id)
        _sessions.mark_error(row.id, f"stopped trading because {why}; {secured}; last error: {detail}", db)
    _log.warning("session %s: tick failed (%s of %s in a row): %s", row.id, failures, limit, detail)


class _Tick:
    def __init__(self, row, now: datetime | None, db: _ledger.Db) -> None:
        self.row, self.now, self.db = row, now, db
        self.settings: dict[str, Any] = dict(row.settings)
        with db() as scope:
            self.strategy = typing.cast(store.Strategy, scope.get(store.Strategy, row.strategy_id))
        self.step = parse_timeframe(row.timeframe)
        self.paper = row.exchange == _venue.PAPER
        self.report = TickReport(row.id, "running")
        self.secured = True  # False once a wind-down could not secure the position
        self.mine: dict[str, store.Order] = {}  # this candle's order rows by client order id
        self._sent: dict[str, Order] = {}  # orders this tick sent, by exchange id, as the exchange answered
        self._settled_now: dict[str, Order] = {}  # earlier orders this tick settled that filled, by exchange id
        self._absent: set[str] = set()  # client ids resolved this tick as never accepted
        self._unseen: set[str] = set()  # client ids of accepted orders the exchange did not show this tick
        self._retrying = Retrying(
            retry=retry_if_exception_type(_TRANSIENT),
            wait=self._wait,
            reraise=True,
            stop=stop_any(
                stop_after_attempt(int(self.settings.get("retry_attempts", 4))),
                # tenacity annotates stop_any's stops as stop_base; it calls any callable stop
                _LongRateLimit(float(self.settings.get("retry_max_wait", 30.0))),  # type: ignore[arg-type]
            ),
        )

    def _wait(self, retry_state) -> float:
        return self._backoff(retry_state.outcome.exception(), retry_state.attempt_number)

    def _backoff(self, exc: BaseException, attempt: int) -> float:
        """As long as a rate limit asks (a venue bans a client that comes back sooner: Binance
        answers 418), else back off exponentially within ``retry_max_wait``."""
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return float(asked)
        return min(float(self.settings.get("retry_max_wait", 30.0)), 0.5 * 2 ** (attempt - 1))

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._retrying(function, *args, **kwargs)

    # -- the steps ------------------------------------------------------------------------
    def run(self) -> TickReport:
        row = self.row
        candle = self._paper_candle() if self.paper else None
        with _venue.open_venue(
            row.id,
            row.exchange,
            row.exchange_account_id,
            row.market_type,
            row.timeframe,
            self.settings,
            candle if self.paper else self.now,
            self.db,
            since=self._settled(),
        ) as exchange:
            self.exchange = exchange
            if candle is None:
                candle = pd.Timestamp(self.now or exchange.now()).floor(self.step).to_pydatetime()
            self.candle = self.report.candle = candle
            if row.last_tick_at is not None and candle <= row.last_tick_at:
                self.report.skipped = f"the candle of {candle} was ticked already"
                return self.report
            self.market = exchange.market(row.symbol)
            if not self.market.active:
                self._pause_closed_market()
            # record the last bar's fills, then stop
            if self.paper and typing.cast("PaperExchange", exchange).clock.finished:
                self._record(self._call(exchange.fetch_price, row.symbol, row.timeframe))
                self._cancel_pending()
                self._finish_replay()
                return self.report
            if self.market.type == "swap":
                if not self.paper:
                    self._check_liquidation()
                # every tick: a margin mode or leverage changed by hand is set back
                self._call(exchange.set_leverage, row.symbol, int(row.leverage))
            price = self.price = self._call(exchange.fetch_price, row.symbol, row.timeframe)
            the_plan = self._plan(price)
            legs = [leg for leg in self._reconcile(the_plan, price) if not self._placed(leg)]
            equity, _, position = self._account(price)
            self._check_risk(legs, position, equity, price)
            for leg in legs:
                self._give_way()
                self._place(leg)
            self._record(price)
        return self.report

    def _give_way(self) -> None:
        """Before each order: end here when ``stop()`` or ``pause()`` waits for this tick
        (what it sent so far is recorded; the stop cancels it)."""
        if _halting(self.db, self.row.id):
            self._record(self.price)
            self.report.skipped = f"{_HALTING}; {len(self.report.placed)} orders were sent before it gave way"
            raise _Halted(self.report.skipped)

    def wind_down(self, policy: str) -> str:
        """Cancel our resting orders, then flatten, protect or leave the position (``policy``)."""
        row = self.row
        self.report.status = "stopped"  # the records of a wind-down never complete a candle
        candle = self._paper_candle() if self.paper else None
        with _venue.open_venue(
            row.id,
            row.exchange,
            row.exchange_account_id,
            row.market_type,
            row.timeframe,
            self.settings,
            candle,
            self.db,
            since=self._settled(),
        ) as exchange:
            self.exchange = exchange
            if self.paper and typing.cast("PaperExchange", exchange).clock.finished:
                return "the replay had ended: nothing rests on the paper exchange"
            self.candle = self.report.candle = candle or pd.Timestamp(exchange.now()).floor(self.step).to_pydatetime()
            self.market = exchange.market(row.symbol)
            self.mine = {r.client_order_id: r for r in _ledger.orders(self.db, row.id, candle=self.candle)}
            resting = _ledger.orders(self.db, row.id, pending=True)
            strategy_stop = next((r.price for r in reversed(resting) if r.type == "stop" and r.price), None)
            self._cancel_pending()
            self.price = self._call(exchange.fetch_price, row.symbol, row.timeframe)
            position = self._position()
            try:
                outcome = self._secure(policy, position, self.price, strategy_stop)
            except (ExchangeError, VaultError):
                self._record(self.price)  # what filled before the venue refused is the ledger's all the same
                raise
            self._record(self.price)
        cancelled = len(self.report.canceled)
        if not cancelled and outcome is None:
            return "nothing rested or was held on the exchange"
        done = [f"{cancelled} open order{'s' if cancelled != 1 else ''} cancelled"] if cancelled else []
        return ", ".join(done + [outcome or "no position was held"])

    def _secure(self, policy: str, position: Decimal, price: Decimal, stop_price: Decimal | None) -> str | None:
        """Leave ``position`` flat (``flatten``), under an exchange-native stop (``protect``: at
        the strategy's last stop, else ``protect_stop`` % from ``price``) or as it is (``leave``);
        what was done, or that the exchange refused it (None: there was no position)."""
        if not position:
            return None
        if not self._tradeable(abs(position), price, reduce_only=True):
            return f"the position of {position:g} is below the market's minimum order and stays"
        side = "sell" if position > 0 else "buy"
        can_stop = capability(self.exchange, self.market).stop_loss
        if policy == "leave":
            return f"the position of {position:g} was left without protection (on_error 'leave')"
        # the strategy's stop already crossed: a stop there would fire at once (Binance refuses it,
        # -2010 "Stop price would trigger immediately"), so do what it would have done
        crossed = stop_price is not None and (stop_price >= price if position > 0 else stop_price <= price)
        if policy == "protect" and can_stop and not crossed:
            percent = Decimal(str(self.settings.get("protect_stop", self.strategy.params.get("stop_loss") or 5)))
            away = price * percent / 100
            trigger = stop_price if stop_price is not None else (price - away if position > 0 else price + away)
            leg = Leg(self._unused("guard"), "stop", side, abs(position), trigger, True)
            done = f"the position of {position:g} is protected by a stop at {trigger:g} on the exchange"
        else:
            leg = Leg(self._unused("flat"), "market", side, abs(position), price, True)
            why = (
                ""
                if policy == "flatten"
                else f" (its stop at {stop_price:g} was already crossed)"
                if can_stop
                else f" ({self.exchange.name} {self.market.type} has no native stop)"
            )
            done = f"the position of {position:g} was closed at market{why}"
        self._place(leg)
        if _ledger.client_id(self.row.id, self.candle, leg.name) not in self.report.placed:  # refused: said so
            self.secured = False
            return f"the position of {position:g} could NOT be secured: {self.report.emulated[-1]}"
        left = self._close_rest(price) if leg.type == "market" else Decimal(0)
        if left:
            self.secured = False
            return f"{done}, but {left:g} of it could NOT be closed (the market orders filled only part of it)"
        return done

    def _close_rest(self, price: Decimal, attempts: int = 2) -> Decimal:
        """What a market close left open (a venue may fill a market order in part and cancel
        the rest), closed again up to ``attempts`` times; what still remains (dust below the
        market's minimum order aside)."""
        left = self._position()
        while left and self._tradeable(abs(left), price, reduce_only=True) and attempts:
            attempts -= 1
            self.mine = {r.client_order_id: r for r in _ledger.orders(self.db, self.row.id, candle=self.candle)}
            self._place(Leg(self._unused("flat"), "market", "sell" if left > 0 else "buy", abs(left), price, True))
            left = self._position()
        return left if left and self._tradeable(abs(left), price, reduce_only=True) else Decimal(0)

    def _unused(self, leg: str) -> str:
        """``leg``, numbered past the names this candle's rows hold: an earlier wind-down in the
        same candle (an error, then stop()) settled its own guard or flat order, which must not
        be taken for this one's (its rows were all settled before, by ``_cancel_pending``)."""
        taken = {r.leg for r in self.mine.values()}
        return next(name for name in (leg, *(f"{leg}{n}" for n in range(1, len(taken) + 2))) if name not in taken)

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
            scope.execute(
                update(store.TradingSession)
                .where(store.TradingSession.id == self.row.id, store.TradingSession.status == "running")
                .values(status="stopped", status_message="the replay reached the end of its candles")
            )
        self.report.status, self.report.skipped = "stopped", "the replay reached the end of its candles"

    def _candles(self) -> pd.DataFrame:
        """Every closed candle from the session's warm-up start to the forming one, page by page."""
        frames, since = [], pd.Timestamp(self.row.history_from)
        while True:
            page = self._call(
                self.exchange.fetch_ohlcv, self.row.symbol, self.row.timeframe, since.to_pydatetime(), _PAGE
            )
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
            raise ExchangeUnavailable(
                f"session #{self.row.id}: the exchange has no closed {self.row.timeframe} "
                f"candle before {self.candle} yet (newest: {got}); try again shortly"
            )
        if self.paper:
            fees, slippage = self.settings.get("fees", 0.001), float(self.settings.get("slippage", 0.0005))
        else:
            taker = float(self.market.taker_fee or 0.001)
            fees, slippage = (
                {"maker": float(self.market.maker_fee or taker), "taker": taker},
                float(self.settings.get("slippage", 0.0005)),
            )
        fees = fees if isinstance(fees, dict) else {"maker": fees, "taker": fees}
        return plan(
            self.strategy.template,
            self.strategy.params,
            self.strategy.risk_limits,
            candles,
            self.row.anchor_at,
            self.candle,
            float(price),
            float(self.row.init_equity),
            fees=fees,
            slippage=slippage,
        )

    def _reconcile(self, the_plan: Plan, price: Decimal) -> list[Leg]:
        """Adopt or cancel orders of ours the database does not know, settle our orders of
        earlier candles (cancel what still rests: each candle plans its own), refresh this
        candle's (a retried tick), and add a "sync" leg when the position without this
        candle's fills is not the simulation's."""
        self._adopt_unknown()
        for row in _ledger.orders(self.db, self.row.id, pending=True):
            self._settle(row, cancel=row.candle_at != self.candle)
        self.mine = {row.client_order_id: row for row in _ledger.orders(self.db, self.row.id, candle=self.candle)}
        position = self._position()
        done_now = sum((r.filled if r.side == "buy" else -r.filled for r in self.mine.values()), Decimal(0))
        gap = Decimal(repr(the_plan.units)) - (position - done_now)
        legs = list(the_plan.legs)
        if gap and self._tradeable(abs(gap), price):
            reduces = position and (gap > 0) != (position > 0) and abs(gap) <= abs(position)
            legs.insert(0, Leg("sync", "market", "buy" if gap > 0 else "sell", abs(gap), price, bool(reduces)))
        return legs

    def _tradeable(self, amount: Decimal, price: Decimal, reduce_only: bool = False) -> bool:
        """Whether the venue takes a market order of ``amount`` (a reduce-only one closes what is
        below the minimum order value on a perpetual)."""
        try:
            self.exchange.normalize_order(self.row.symbol, amount, price, type="market", reduce_only=reduce_only)
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
            _risk.check(
                position=position,
                equity=equity,
                day_start=_ledger.day_start_equity(self.db, self.row.id, midnight),
                legs=legs,
                leverage=Decimal(self.row.leverage),
                max_leverage=Decimal(str(self.settings.get("max_leverage", self.row.leverage))),
                max_position_size=limits.get("max_position_size"),
                max_daily_loss=limits.get("max_daily_loss"),
                currency=self.market.settle or self.market.quote,
            )
        except RiskLimitBreached as breach:
            self._breach(breach, position, price)
            raise

    def _breach(self, breach: RiskLimitBreached, position: Decimal, price: Decimal) -> None:
        """Stop new orders: cancel ours, flatten when the session says so, record, go to ``error``."""
        self._cancel_pending()
        message = f"{breach}; new orders stopped"
        if (
            self.settings.get("flatten_on_breach", True)
            and position
            and self._tradeable(abs(position), price, reduce_only=True)
        ):
            self._place(Leg("flat", "market", "sell" if position > 0 else "buy", abs(position), price, True))
            message += f", position of {position:g} closed at market"
        self.report.status, self.report.message = "error", message
        self._record(price)
        _sessions.mark_error(self.row.id, message, self.db)
        _log.warning("session %s: %s", self.row.id, message)

    def _cancel_pending(self) -> None:
        """Cancel every order of ours still resting; settle the records of the others."""
        self._adopt_unknown()
        for row in _ledger.orders(self.db, self.row.id, pending=True):
            self._settle(row, cancel=True)

    def _settle(self, row: store.Order, *, cancel: bool) -> None:
        """Bring one pending order row up to date with the exchange (``cancel``: if it still
        rests, cancel it). A row that was never heard back from is resolved first; one the
        exchange never got is ``expired`` (only once its candle is over: until then the leg
        may still be sent)."""
        symbol, cid = self.row.symbol, row.client_order_id
        unknown = row.exchange_order_id is None
        found = (
            self._resolve(cid, row.sent_at or row.created_at)
            if unknown
            else self._call(self.exchange.fetch_order, symbol, row.exchange_order_id)
        )
        if found is None:
            if unknown and (cancel or row.candle_at != self.candle):
                _ledger.record_order(
                    self.db,
                    self.row.id,
                    cid,
                    None,
                    status="expired",
                    resolution="never reached the exchange (none shown after the wait)",
                )
            elif unknown:
                self._absent.add(cid)
            else:  # an accepted order the exchange does not show yet: next time
                self._unseen.add(cid)
            return
        if cancel and found.status == "open":
            try:
                found = self._call(self.exchange.cancel_order, symbol, found.id)
                self.report.canceled.append(cid)
            except OrderNotFound:  # it filled or lapsed meanwhile
                found = self._call(self.exchange.fetch_order, symbol, found.id) or found
        _ledger.record_order(
            self.db,
            self.row.id,
            cid,
            found,
            resolution="found on the exchange after its answer was lost" if unknown else None,
        )
        if found.filled:
            self._settled_now[found.id] = found

    def _adopt_unknown(self) -> None:
        """Orders on the exchange with this session's client-id prefix that the database does not
        know (a restore from an older backup, a row lost with a crashed database): write them,
        cancelling those that still rest unless ``unknown_orders`` is "adopt" (then they are
        handled like the session's own), and tell the user."""
        known = _ledger.known_orders(self.db, self.row.id)
        prefix, policy = _ledger.client_prefix(self.row.id), self.settings.get("unknown_orders", "cancel")
        history = self._call(self.exchange.fetch_orders, self.row.symbol, self._settled())
        strangers = [
            o for o in history if (o.client_order_id or "").startswith(prefix) and o.client_order_id not in known
        ]
        for order in strangers:
            what = "adopted from the exchange: the database did not know it"
            if order.status == "open" and policy == "cancel":
                try:
                    order = self._call(self.exchange.cancel_order, self.row.symbol, order.id)
                    what = "cancelled on the exchange: the database did not know it"
                except OrderNotFound:
                    order = self._call(self.exchange.fetch_order, self.row.symbol, order.id) or order
            _ledger.adopt_order(self.db, self.row.id, order, what)
            self._notify(
                f"order {order.client_order_id} ({order.side} {order.amount:g}, {order.status}) {what}",
                key=f"unknown-order:{self.row.id}:{order.id}",
            )
        if strangers:
            self.report.message = f"{len(strangers)} order(s) of this session unknown to the database reconciled"

    def _check_liquidation(self) -> None:
        """Before planning: when the venue's liquidation engine closed the position since the last
        recorded fill, record its order and fills as the session's (the ledger stays equal to the
        venue), cancel the session's resting orders, tell the user and end in ``error``: trading on
        would re-open what the venue just closed."""
        since = (_ledger.last_fill_at(self.db, self.row.id) or self.row.anchor_at) - _CLOCK_MARGIN
        fills = self._call(self.exchange.fetch_my_trades, self.row.symbol, since)
        known = set(_ledger.known_orders(self.db, self.row.id).values())
        liquidations = [f for f in fills if f.order_id not in known and self.exchange.is_liquidation(f)]
        if not liquidations:
            return
        for order_id in sorted({f.order_id for f in liquidations}):
            # the venue showed its fills, so it shows the order (None would fail in replace())
            order = typing.cast(Order, self._call(self.exchange.fetch_order, self.row.symbol, order_id))
            _ledger.adopt_order(
                self.db,
                self.row.id,
                replace(order, client_order_id=f"liq-{order_id}"[:64]),
                "closed by the venue's liquidation engine",
            )
        self.report.fills = _ledger.record_fills(self.db, self.row.id, liquidations, adopt=False)
        amount = sum((f.amount for f in liquidations), Decimal(0))
        price = sum((f.amount * f.price for f in liquidations), Decimal(0)) / amount
        self._cancel_pending()
        text = (
            f"{self.row.exchange} liquidated the position: {liquidations[0].side} {amount.normalize():f} "
            f"{self.row.symbol} at {price.quantize(self.market.price_step).normalize():f}; its open orders were "
            f"cancelled and it stopped trading"
        )
        self._notify(text, key=f"liquidated:{self.row.id}:{liquidations[0].order_id}")
        self.report.status, self.report.message = "error", text
        self._record(price)
        _sessions.mark_error(self.row.id, text, self.db)
        raise _Halted(text)

    def _pause_closed_market(self) -> None:
        """The venue halts or delists the session's market: pause (orders and position stay as
        they are, nothing can trade there) and tell the user."""
        text = (
            f"paused: {self.row.symbol} does not trade on {self.row.exchange} now (halted or being delisted); "
            f"its orders and position were left as they are; resume the session once the market trades again"
        )
        with self.db() as scope:
            scope.execute(
                update(store.TradingSession)
                .where(store.TradingSession.id == self.row.id, store.TradingSession.status == "running")
                .values(status="paused", status_message=text)
            )
        self._notify(text, key=f"market-closed:{self.row.id}:{self.candle.isoformat()}")
        self.report.status, self.report.skipped = "paused", text
        raise _Halted(text)

    def _notify(self, text: str, *, key: str) -> None:
        _notify(self.db, self.row.id, text, key=key)

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
        reduce_only = leg.reduce_only and (self.paper or self.market.type == "swap")
        try:
            amount, price = self.exchange.normalize_order(
                self.row.symbol, self._affordable(leg), leg.price, type=leg.type, reduce_only=reduce_only
            )
        except InvalidOrder as exc:
            self.report.emulated.append(f"{leg.name} (not sent: {exc})")
            return
        unknown = row is not None and cid not in self._absent  # an earlier attempt may have sent it
        if row is None:
            row = _ledger.record_intent(self.db, self.row.id, self.candle, leg, cid, amount, price)
            checkpoint("intent_recorded", leg.name)
        elif not unknown:  # resolved as never accepted: sent again from now
            row.sent_at = _ledger.mark_sent(
                self.db, self.row.id, cid, "sent again: the exchange showed no order under its client id after the wait"
            )
        try:
            order, resolution = self._ensure(
                cid,
                lambda: self.exchange.create_order(
                    self.row.symbol, leg.side, leg.type, amount, price, client_order_id=cid, reduce_only=reduce_only
                ),
                sent_at=row.sent_at or row.created_at,
                unknown=unknown,
            )
        except InsufficientFunds as exc:  # the account is not the simulation's: skip the leg, trade on
            _ledger.record_order(self.db, self.row.id, cid, None, status="rejected", resolution=str(exc)[:500])
            self.report.emulated.append(f"{leg.name} (refused by the exchange: {exc})")
            return
        checkpoint("after_send", leg.name)
        _ledger.record_order(self.db, self.row.id, cid, order, resolution=resolution)
        checkpoint("after_write", leg.name)
        self.report.placed.append(cid)
        self._sent[order.id] = order

    def _affordable(self, leg: Leg) -> Decimal:
        """The leg's amount, cut to what the account has when it differs from the simulation
        (fills away from its prices, commissions taken from the asset bought): a spot sell to
        the base asset still free after the earlier legs of the tick (resting sells hold theirs;
        on a venue so do stops, which Gate holds nothing for until one triggers and then fails
        for want of base; the paper exchange serves stop and take-profits as the backtest does),
        a reduce-only leg to the position less the reduce-only orders resting on it, an entry to
        what the free balance pays for."""
        if leg.side == "sell" and self.market.type == "spot":
            base = self._call(self.exchange.fetch_balance).get(self.market.base)
            stops = (
                Decimal(0)
                if self.paper
                else sum(
                    (o.remaining for o in self._sent.values() if o.type == "stop" and o.status == "open"), Decimal(0)
                )
            )
            free: Decimal | Balance | None  # here the free base; below the quote balance
            free = min(
                base.free if base else Decimal(0),
                (base.total if base else Decimal(0)) - stops,
                max(self._position(), Decimal(0)),
            )
            return self._cut(leg, free, "the free base balance")
        if leg.reduce_only:
            position = self._position()
            resting = sum(
                (
                    o.remaining
                    for o in self._sent.values()
                    if o.reduce_only and o.status == "open" and (o.side == "sell") == (position > 0)
                ),
                Decimal(0),
            )
            return self._cut(leg, max(abs(position) - resting, Decimal(0)), "the position not yet covered")
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

    def _cut(self, leg: Leg, available: Decimal, what: str) -> Decimal:
        if leg.amount > available:
            self.report.emulated.append(f"{leg.name} (cut from {leg.amount:g} to {what}, {available:g})")
        return min(leg.amount, available)

    def _ensure(
        self, cid: str, send: Callable[[], Order], *, sent_at: datetime, unknown: bool
    ) -> tuple[Order, str | None]:
        """The order under ``cid`` executed at most once, and how its outcome was settled when
        an answer was missing. ``unknown``: an earlier attempt (last sent at ``sent_at``) may
        have reached the exchange; then, and after every send whose answer is lost, the order
        is resolved from the exchange's records before it is sent again (see ORDERS.md)."""
        failure: ExchangeError | None
        attempts, failure = int(self.settings.get("retry_attempts", 4)), None
        for attempt in range(1, attempts + 1):
            if unknown:
                found = self._resolve(cid, sent_at)
                if found is not None:
                    return found, "found on the exchange after its answer was lost"
                sent_at = _ledger.mark_sent(
                    self.db,
                    self.row.id,
                    cid,
                    "sent again: the exchange showed no order under its client id after the wait",
                )
            checkpoint("before_send", cid)
            try:
                return send(), None
            except DuplicateOrder as exc:  # Binance: an order under this id is open, so it was ours
                failure = exc
            except _TRANSIENT as exc:  # the outcome is unknown
                failure = exc
                wait = self._backoff(exc, attempt)
                if wait > float(self.settings.get("retry_max_wait", 30.0)):
                    raise  # a long rate limit: the next run resolves the order from the exchange
                time.sleep(wait)
            unknown = True
        raise typing.cast(ExchangeError, failure)  # attempts >= 1: the loop set it

    def _resolve(self, cid: str, sent_at: datetime) -> Order | None:
        """What the exchange did with the order sent under ``cid`` at ``sent_at`` whose answer
        never came (lost, timed out, the process died), from its own records: once the venue
        has had ``order_visibility_wait`` seconds to show it, a lookup by client id, then the
        order history since the send (a venue finds finished orders by client id only for a
        while). None: the exchange has no such order, so it never got it."""
        wait = 0.0 if self.paper else float(self.settings.get("order_visibility_wait", 3.0))
        remaining = (pd.Timestamp(sent_at) + pd.Timedelta(seconds=wait) - pd.Timestamp.now(tz="UTC")).total_seconds()
        if remaining > 0:
            time.sleep(remaining)
        found = self._call(self.exchange.fetch_order_by_client_id, self.row.symbol, cid)
        if found is not None:
            return found
        history = self._call(self.exchange.fetch_orders, self.row.symbol, sent_at - _CLOCK_MARGIN)
        return next((o for o in reversed(history) if o.client_order_id == cid), None)

    # -- records --------------------------------------------------------------------------
    def _record(self, price: Decimal) -> None:
        fills = self._visible_fills()
        self.report.fills = _ledger.record_fills(self.db, self.row.id, fills, adopt=self.paper)
        checkpoint("fills_recorded")
        self._hand_trades(fills)
        if self.market.type == "swap" and not self.paper:  # what the venue booked: compare with a backtest's
            since = _ledger.last_funding_at(self.db, self.row.id) or self.row.anchor_at
            self.report.funding = _ledger.record_funding(
                self.db, self.row.id, self._call(self.exchange.fetch_funding_payments, self.row.symbol, since)
            )
        self._compare_ledger()
        equity, balance, position = self._account(price)
        pnl = equity - Decimal(self.row.init_equity)
        _ledger.snapshot(self.db, self.row.id, self.candle, balance, equity, position, pnl)
        with self.db() as scope:
            values = {"current_balance": balance, "total_pnl": pnl, "failed_ticks": 0}
            if self.report.status == "running":
                values["last_tick_at"] = self.candle
            scope.execute(update(store.TradingSession).where(store.TradingSession.id == self.row.id).values(**values))
        self.report.equity, self.report.position = equity, position

    def _visible_fills(self) -> list[Fill]:
        """The account's fills since the last recorded one, waiting (up to the visibility
        wait) until those of the orders this tick sent or settled show in full: an order the
        venue reports filled (a resting one that filled before its cancel) may show its trades
        only later, and a wind-down is the session's last chance to record them."""
        since = (_ledger.last_fill_at(self.db, self.row.id) or self.row.anchor_at) - _CLOCK_MARGIN
        deadline = time.monotonic() + (0.0 if self.paper else float(self.settings.get("order_visibility_wait", 3.0)))
        filled = {o.id: o.filled for o in (*self._settled_now.values(), *self._sent.values()) if o.filled}
        recorded = _ledger.recorded_fills(self.db, self.row.id, list(filled)) if filled else {}
        while True:
            fills = self._call(self.exchange.fetch_my_trades, self.row.symbol, since)
            shown = {order_id: dict(recorded.get(order_id, {})) for order_id in filled}
            for fill in fills:
                if fill.order_id in shown:
                    shown[fill.order_id][fill.id] = fill.amount
            if (
                all(sum(shown[o].values(), Decimal(0)) >= amount for o, amount in filled.items())
                or time.monotonic() >= deadline
            ):
                return fills
            time.sleep(0.1)

    def _unresolved(self) -> bool:
        """Whether an order of ours was sent and not heard back from yet, or is not shown yet
        (the fills of the order a stop placed carry that order's id, known once the stop is)."""
        return bool(self._unseen) or any(
            r.exchange_order_id is None for r in _ledger.orders(self.db, self.row.id, pending=True)
        )

    def _fee_in_base(self, fill: Fill) -> Decimal:
        """The part of a spot fill's amount the venue kept as its commission."""
        return fill.fee if self.market.type == "spot" and fill.fee_currency == self.market.base else Decimal(0)

    def _compare_ledger(self) -> None:
        """The position the recorded fills make against the venue's (net of what the session
        started with): a difference is reported and, when ``on_mismatch`` is "pause", the
        session pauses; by default the next tick's sync leg trades the account back to the
        simulation."""
        if self.paper or self._unresolved():
            return
        recorded = _ledger.position(self.db, self.row.id, base=self.market.base if self.market.type == "spot" else None)
        held = self._position()
        if abs(held - recorded) <= max(self.market.amount_step, abs(recorded) * Decimal("1e-9")):
            return
        text = (
            f"the exchange shows a position of {held:g} on {self.row.symbol} for this session, its recorded "
            f"fills make {recorded:g} ({held - recorded:+g})"
        )
        self.report.message = text
        self._notify(text, key=f"mismatch:{self.row.id}:{self.candle.isoformat()}")
        if self.settings.get("on_mismatch", "report") == "pause":
            with self.db() as scope:
                scope.execute(
                    update(store.TradingSession)
                    .where(store.TradingSession.id == self.row.id, store.TradingSession.status == "running")
                    .values(status="paused", status_message=f"paused: {text}")
                )
            self.report.status = "paused"

    def _hand_trades(self, fills: list[Fill]) -> None:
        """Fills on the session's market that no order of the session made (trades by hand on
        the same account): reported, and taken out of the session's position, so the sync leg
        does not undo them. Judged only when every order of ours is accounted for."""
        if self.paper or self._unresolved():
            return
        ours, prefix = set(_ledger.known_orders(self.db, self.row.id).values()), _ledger.client_prefix(self.row.id)
        foreign = [
            f
            for f in fills
            if f.order_id not in ours
            and not (f.client_order_id or "").startswith(prefix)
            and f.timestamp >= pd.Timestamp(self.row.started_at or self.row.anchor_at)
        ]
        if not foreign:
            return
        with self.db() as scope:
            row = typing.cast(store.TradingSession, scope.get(store.TradingSession, self.row.id, with_for_update=True))
            seen = set(row.settings.get("hand_trades", []))
            new = [f for f in foreign if f.id not in seen]
            if not new:
                return
            moved = sum(((f.amount if f.side == "buy" else -f.amount) - self._fee_in_base(f) for f in new), Decimal(0))
            offset = Decimal(row.settings.get("position_offset", "0")) + moved
            row.settings = {
                **row.settings,
                "position_offset": str(offset),
                "hand_trades": sorted(seen | {f.id for f in new}),
            }
        self.settings["position_offset"] = str(offset)
        self._notify(
            f"{len(new)} trade(s) on {self.row.symbol} not made by this session (by hand?), net "
            f"{moved:+g}; they are left as they are and not counted as the session's position",
            key=f"hand-trades:{self.row.id}:{min(f.id for f in new)}",
        )
