"""Sessions: one saved strategy trading one symbol on one exchange account, and their states.

States and the moves between them (anything else is refused with ``SessionError``)::

    paused  --start/resume-->  running  --pause-->  paused
    running --(tick: risk limit, persistent fault)-->  error(message)
    error   --resume-->  running          (after a human looked at the message)
    paused | running | error  --stop-->  stopped   (final: create a new session to trade again)

A new session is ``paused`` and has never run; ``start`` anchors it: its simulation begins
at the last closed candle, with the account's equity at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from workbench.errors import SessionError
from workbench.live import _venue
from workbench.store.models import WIND_DOWN_POLICIES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from workbench.strategies import SavedStrategy

_MOVES = {  # (from, to) -> the verb that makes the move
    ("paused", "running"): "start/resume",
    ("running", "paused"): "pause",
    ("running", "error"): "a tick",
    ("error", "running"): "resume",
    ("paused", "stopped"): "stop",
    ("running", "stopped"): "stop",
    ("error", "stopped"): "stop",
}
STATES = ("running", "paused", "stopped", "error")
_DEFAULTS = {
    "balance": 10_000.0,
    "fees": 0.001,
    "slippage": 0.0005,
    "flatten_on_breach": True,
    "max_failures": 3,
    "retry_attempts": 4,
    "retry_max_wait": 30.0,
    "on_error": "protect",
    "stop_timeout": 60.0,
    "order_visibility_wait": 3.0,
    "unknown_orders": "cancel",
    "on_mismatch": "report",
}
# what reconciliation does with an open order of the session the database does not know, and
# with a position that differs from the recorded fills (workbench/live/ORDERS.md)
RECONCILE_CHOICES = {"unknown_orders": ("cancel", "adopt"), "on_mismatch": ("report", "pause")}
ON_ERROR = WIND_DOWN_POLICIES  # what an ending session does with its position


@dataclass(frozen=True)
class SessionStatus:
    """A session as its records show it (no exchange call)."""

    id: int
    strategy: str  # "name vN (#id, template)"
    exchange: str
    account_id: int | None
    symbol: str
    market_type: str
    timeframe: str
    leverage: Decimal
    status: str
    message: str | None
    balance: Decimal | None
    equity: Decimal | None
    position: Decimal | None
    pnl: Decimal
    open_orders: int
    last_tick_at: datetime | None
    started_at: datetime | None
    wind_down_pending: str | None = None  # the policy of a wind-down tried again until the position is secured
    funding: Decimal = Decimal(0)  # funding the exchange booked on the position: + received, - paid

    def __str__(self) -> str:
        state = f"{self.status}: {self.message}" if self.message else self.status
        return (
            f"session #{self.id} {self.strategy} on {self.exchange} {self.symbol} [{state}] "
            f"equity {self.equity} pnl {self.pnl} position {self.position}"
        )


def _strategy(strategy: str | int | SavedStrategy) -> SavedStrategy:
    from workbench.strategies import SavedStrategy, load_strategy

    return strategy if isinstance(strategy, SavedStrategy) else load_strategy(strategy)


def create_session(
    strategy: str | int | SavedStrategy,
    symbol: str | None = None,
    *,
    exchange: str = "paper",
    account: int | None = None,
    market_type: str | None = None,
    timeframe: str = "1h",
    leverage: int | None = None,
    **settings: Any,
) -> int:
    """A new session (``paused``, never run) of a saved strategy; its id.

    ``exchange`` is ``"paper"`` (``account`` None) or a ccxt venue (``"binance"``, ``"gate"``)
    with ``account`` a vault account of that exchange. ``market_type`` defaults to ``"swap"``
    when the strategy is leveraged or can go short, else ``"spot"``. ``leverage`` defaults to
    the strategy's own (1 for templates without one) and must agree with it.

    Settings: ``flatten_on_breach`` (True), ``max_leverage`` (= leverage), ``max_failures``
    (3 failed ticks in a row end in ``error``), ``retry_attempts`` (4), ``retry_max_wait``
    (30 s), ``on_error`` (what a session that errors or stops does with its position after
    cancelling its open orders: ``"protect"``, the default, rests an exchange-native stop at
    the strategy's last stop, else ``protect_stop`` % (the strategy's ``stop_loss``, else 5)
    from the price, and closes at market where the venue has no native stops; ``"flatten"``
    closes at market; ``"leave"`` leaves it), ``stop_timeout`` (60 s: how long ``stop`` and
    ``pause`` wait for a running tick to give way), ``emulate_stops`` (allow a strategy with
    stop-losses on a venue without native stops: they close one bar late at market); paper: ``balance`` (10,000), ``fees`` (0.001 or {"maker", "taker"}),
    ``slippage`` (0.0005), ``data`` (bundled candles, "btcusd_1h"), ``replay_from`` and
    ``replay_end`` (times; default: from the first candle after the warm-up); ccxt:
    ``slippage`` (the simulation's), ``capital`` (the equity the session may use; default
    the quote balance), ``ccxt`` ({"urls": ..., "config": ...}, e.g. a test server),
    ``order_visibility_wait`` (3 s: how long the venue may take to show an accepted order
    before one whose answer was lost counts as never accepted), ``unknown_orders`` ("cancel"
    or "adopt" open orders of the session the database does not know), ``on_mismatch``
    ("report", or "pause" when the venue's position differs from the recorded fills).
    """
    from workbench import store
    from workbench.data import parse_timeframe
    from workbench.strategies import kernel_for

    saved = _strategy(strategy)
    parse_timeframe(timeframe)
    known = {
        *_DEFAULTS,
        "max_leverage",
        "data",
        "replay_from",
        "replay_end",
        "capital",
        "ccxt",
        "protect_stop",
        "emulate_stops",
    }
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SessionError(
            f"create_session: unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}"
        )
    if settings.get("on_error", "protect") not in ON_ERROR:
        raise SessionError(f"on_error {settings['on_error']!r}: use one of {', '.join(ON_ERROR)}")
    for name, choices in RECONCILE_CHOICES.items():
        if settings.get(name, choices[0]) not in choices:
            raise SessionError(f"{name} {settings[name]!r}: use one of {', '.join(choices)}")
    kernel = kernel_for(saved.template)
    own = kernel.strategy_leverage(saved.params)
    leverage = int((own or 1) if leverage is None else leverage)
    if own is not None and leverage != own:
        raise SessionError(
            f"leverage {leverage} differs from strategy {saved}'s own leverage {own:g}; "
            "save a version of the strategy with that leverage instead"
        )
    if leverage < 1:
        raise SessionError(f"leverage {leverage} must be at least 1")
    max_leverage = settings.get("max_leverage", leverage)
    if leverage > max_leverage:
        raise SessionError(f"risk limit max_leverage {max_leverage} is below the session's leverage {leverage}")
    if market_type is None:
        market_type = "swap" if leverage > 1 or kernel.can_short(saved.params) else "spot"
    if market_type not in ("spot", "swap"):
        raise SessionError(f"market_type {market_type!r}: use 'spot' or 'swap'")
    if market_type == "spot" and leverage > 1:
        raise SessionError(f"leverage {leverage} needs market_type 'swap'; spot trades at leverage 1")
    _check_capability(exchange, market_type, saved, kernel, settings)
    if exchange == _venue.PAPER:
        if account is not None:
            raise SessionError("a paper session has no exchange account; leave account=None")
        symbol = symbol or _venue.paper_symbol(settings, market_type)
    else:
        if account is None:
            raise SessionError(f"a {exchange} session needs account=<vault account id> (wb.vault.accounts())")
        if symbol is None:
            raise SessionError(f"a {exchange} session needs a symbol, e.g. 'BTC/USDT' or 'BTC/USDT:USDT'")
        _check_account(account, exchange)
    with store.session() as scope:
        row = store.TradingSession(
            strategy_id=saved.id,
            exchange_account_id=account,
            exchange=exchange,
            symbol=symbol,
            leverage=Decimal(leverage),
            status="paused",
            status_message="created; start() it to trade",
            market_type=market_type,
            timeframe=timeframe,
            settings={**_DEFAULTS, "max_leverage": max_leverage, **settings},
        )
        scope.add(row)
        scope.flush()
        return row.id


def _check_capability(exchange: str, market_type: str, saved: SavedStrategy, kernel, settings: dict) -> None:
    """Refuse, at creation, a strategy whose stops the venue cannot rest on its book (unless
    ``emulate_stops``: the session then closes one bar late, at the next tick's market price)."""
    from workbench.exchange import capability

    offer = capability(exchange, market_type)
    if "stop" in kernel.legs.values() and not offer.stop_loss and not settings.get("emulate_stops"):
        raise SessionError(
            f"strategy {saved} places stop-losses, which {exchange} {market_type} sessions cannot "
            "rest on the exchange yet (workbench.exchange.CAPABILITIES); pass emulate_stops=True to "
            "close one bar late at market instead, or trade it where stops are native"
        )


def _check_account(account: int, exchange: str) -> None:
    from workbench import vault

    found = next((a for a in vault.backend().accounts() if a.id == account), None)
    if found is None:
        raise SessionError(f"no exchange account {account} in your vault; wb.vault.accounts() lists them")
    if found.exchange != exchange:
        raise SessionError(f"exchange account {account} is a {found.exchange} account, not {exchange}")
    if found.permissions != "trade":
        raise SessionError(f"exchange account {account} has permissions {found.permissions!r}; trading needs 'trade'")


def _row(scope, session_id: int, *, lock: bool = False):
    from sqlalchemy import select

    from workbench import store

    query = select(store.TradingSession).where(store.TradingSession.id == session_id)
    row = scope.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise SessionError(f"no trading session #{session_id}; workbench.live.sessions() lists yours")
    return row


def _move(row, to: str, message: str | None) -> None:
    _check_move(row, to)
    row.status, row.status_message = to, message


def _check_move(row, to: str) -> None:
    if (row.status, to) not in _MOVES:
        allowed = [f"{target} ({verb})" for (source, target), verb in _MOVES.items() if source == row.status]
        raise SessionError(
            f"session #{row.id} cannot go from {row.status} to {to}; from {row.status} it can go "
            f"to {', '.join(allowed) if allowed else 'nowhere: a stopped session is final'}"
        )


def start(session_id: int) -> SessionStatus:
    """Start a new session (anchoring its simulation at the last closed candle), or resume
    a paused one: it trades from the next tick."""
    return _set(session_id, "running", None)


def _anchor(scope, row) -> None:
    """Where the session's simulation starts: the last closed candle, with today's equity."""
    import pandas as pd
    from sqlalchemy import func

    from workbench.data import parse_timeframe
    from workbench.live._plan import warmup_bars
    from workbench.strategies import load_strategy

    saved = load_strategy(row.strategy_id)
    step = parse_timeframe(row.timeframe)
    warmup = warmup_bars(saved.template, saved.params)
    settings = dict(row.settings)
    if row.exchange == _venue.PAPER:
        candles = _venue.replay_candles(settings, row.timeframe)
        first = settings.get("replay_from")
        forming = pd.Timestamp(first) if first else candles.index[min(warmup + 1, len(candles) - 1)]
        if not candles.index[0] < forming <= candles.index[-1]:
            raise SessionError(
                f"replay_from {forming} is outside the replayed candles ({candles.index[0]} to {candles.index[-1]})"
            )
        equity = Decimal(repr(float(settings["balance"])))
        history_from = max(candles.index[0], forming - step * (warmup + 1))
    else:
        with _venue.open_venue(
            row.id, row.exchange, row.exchange_account_id, row.market_type, row.timeframe, settings, None
        ) as exchange:
            now = pd.Timestamp(exchange.now())
            forming = now.floor(step)
            market = exchange.market(row.symbol)
            quote = exchange.fetch_balance().get(market.settle or market.quote)
            position = exchange.fetch_position(row.symbol)
        available = quote.total if quote else Decimal(0)
        capital = settings.get("capital")
        equity = min(available, Decimal(str(capital))) if capital is not None else available
        if equity <= 0:
            raise SessionError(
                f"session #{row.id}: the {row.exchange} account holds no {market.settle or market.quote} to trade with"
            )
        settings["position_offset"] = str(position.size)  # holdings before the session are not its own
        settings["equity_offset"] = str(available - equity)  # the rest of the account is not its own
        history_from = forming - step * (warmup + 1)
    row.settings = settings
    row.anchor_at = (forming - step).to_pydatetime()
    row.history_from = history_from.to_pydatetime()
    row.init_equity = equity
    row.current_balance = equity
    row.started_at = func.now()


def _refuse_shared_account(scope, row) -> None:
    from sqlalchemy import select

    from workbench import store

    if row.exchange_account_id is None:
        return
    other = scope.scalars(
        select(store.TradingSession.id).where(
            store.TradingSession.exchange_account_id == row.exchange_account_id,
            store.TradingSession.symbol == row.symbol,
            store.TradingSession.id != row.id,
            store.TradingSession.status.in_(("running", "paused", "error")),
            store.TradingSession.started_at.is_not(None),
        )
    ).first()
    if other is not None:
        raise SessionError(
            f"session #{other} already trades {row.symbol} on exchange account "
            f"{row.exchange_account_id}; two sessions on one account and symbol would trade "
            "each other's positions"
        )


def resume(session_id: int) -> SessionStatus:
    """A paused session, or one in ``error`` whose cause was dealt with, trades again."""
    return _set(session_id, "running", None)


def pause(session_id: int) -> SessionStatus:
    """Stop trading until ``resume``. A tick that is running gives way before its next order
    (``pause`` waits up to the ``stop_timeout`` setting for it); open orders stay on the exchange."""
    return _halt(session_id, "paused", "paused by the user")


def stop(session_id: int, *, opener=None) -> SessionStatus:
    """End the session for good (its records stay). A running tick gives way first; then the
    session's open orders are cancelled on the exchange and its position is closed at market,
    protected by an exchange-native stop or left, as its ``on_error`` setting says (default
    ``protect``); the status message, and so the ``session.stopped`` notification, says which.
    When the exchange could not be reached or refused, every scheduled run of the session tries
    the wind-down again until the position is secured; ``stop()`` again tries at once.
    ``opener``: the session factory to use (default ``store.session``; the hub's service
    passes the caller's)."""
    return _halt(session_id, "stopped", "stopped by the user", opener)


def _halt(session_id: int, to: str, message: str, opener=None) -> SessionStatus:
    """Move to ``to`` holding the tick's lock, so no tick runs on after the move returns."""
    from workbench import store
    from workbench.live import _tick

    with (opener or store.session)() as scope:
        row = _row(scope, session_id)
        # stopped again: its wind-down could not secure the position, so it is tried again now
        again = to == "stopped" and row.status == "stopped" and row.wind_down_pending is not None
        if not again:
            _check_move(row, to)  # refused now, before any wait
        wait = float(row.settings.get("stop_timeout", _DEFAULTS["stop_timeout"]))
    with _tick.halted(session_id, wait=wait, opener=opener) as db:
        if db is None:
            raise SessionError(
                f"session #{session_id}: a tick still runs after {wait:g} s; it gives way before "
                f"its next order, so call {'stop' if to == 'stopped' else 'pause'}() again shortly"
            )
        if again:
            _tick.retry_wind_down(db, session_id)
            return status(session_id, opener=opener)
        if to == "stopped":
            message = f"{message}; {_tick.wind_down(db, session_id)}"
        with db() as scope:
            _move(_row(scope, session_id, lock=True), to, message[:2000])
    return status(session_id, opener=opener)


def _set(session_id: int, to: str, message: str | None, opener=None) -> SessionStatus:
    from workbench import store

    with (opener or store.session)() as scope:
        row = _row(scope, session_id, lock=True)
        if to == "running" and row.started_at is None and row.status == "paused":
            _anchor(scope, row)
            _refuse_shared_account(scope, row)
        _move(row, to, message)
        if to == "running":  # trading again: its ticks reconcile with the exchange, no wind-down is due
            row.wind_down_pending = None
    return status(session_id, opener=opener)


def mark_error(session_id: int, message: str, db=None) -> None:
    """A tick's verdict: the running session goes to ``error`` (unless a user moved it meanwhile)."""
    from sqlalchemy import update

    from workbench import store

    with (db or store.session)() as scope:
        scope.execute(
            update(store.TradingSession)
            .where(store.TradingSession.id == session_id, store.TradingSession.status == "running")
            .values(status="error", status_message=message[:2000])
        )


def status(session_id: int, *, opener=None) -> SessionStatus:
    """The session's state, balance, equity, position, PnL and open orders, from its records."""
    from workbench import store

    with (opener or store.session)() as scope:
        return _status(scope, _row(scope, session_id))


def _status(scope, row) -> SessionStatus:
    from contextlib import nullcontext

    from sqlalchemy import func, select

    from workbench import store
    from workbench.strategies import load_strategy

    snapshot = scope.execute(
        select(store.EquitySnapshot.equity, store.EquitySnapshot.position)
        .where(store.EquitySnapshot.session_id == row.id)
        .order_by(store.EquitySnapshot.ts.desc())
        .limit(1)
    ).first()
    open_orders = scope.scalar(
        select(func.count())
        .select_from(store.Order)
        .where(store.Order.session_id == row.id, store.Order.status.in_(("new", "open")))
    )
    funding = scope.scalar(
        select(func.coalesce(func.sum(store.FundingPayment.amount), 0)).where(store.FundingPayment.session_id == row.id)
    )
    return SessionStatus(
        id=row.id,
        strategy=str(load_strategy(row.strategy_id, opener=lambda: nullcontext(scope))),
        exchange=row.exchange,
        account_id=row.exchange_account_id,
        symbol=row.symbol,
        market_type=row.market_type,
        timeframe=row.timeframe,
        leverage=row.leverage,
        status=row.status,
        message=row.status_message,
        balance=row.current_balance,
        equity=snapshot.equity if snapshot else row.init_equity,
        position=snapshot.position if snapshot else None,
        pnl=row.total_pnl,
        open_orders=open_orders,
        last_tick_at=row.last_tick_at,
        started_at=row.started_at,
        wind_down_pending=row.wind_down_pending,
        funding=Decimal(funding),
    )


def sessions() -> pd.DataFrame:
    """Your sessions, one row each, newest first."""
    import pandas as pd
    from sqlalchemy import select

    from workbench import store

    with store.session() as scope:
        rows = scope.scalars(select(store.TradingSession).order_by(store.TradingSession.id.desc())).all()
        table = [vars(_status(scope, row)) for row in rows]
    columns = list(SessionStatus.__dataclass_fields__)
    return pd.DataFrame(table, columns=columns).set_index("id")
