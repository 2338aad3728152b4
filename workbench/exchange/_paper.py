"""The paper exchange: the exchange interface simulated on candles, with the backtest's fill rules.

So that a paper session reproduces a backtest's trades, fills and accounting call the
backtest engine's own functions (``workbench.engine.core``): a market order fills at
the open of the forming bar (the replay clock's "now") with adverse slippage and the taker
fee; a resting limit order is matched against each bar that closes after it was placed
with ``limit_fill`` (at the limit as maker when the bar trades through it, at the open as
taker when the bar opens through it); a resting stop-market order (``type="stop"``) fills
with ``stop_fill`` (at the stop, or the open when the bar gaps through it, less slippage,
as a taker); cash, margin, entry and realised PnL follow ``fill``; an isolated-margin swap
position is liquidated as ``liquidate`` does, the position's stop or its liquidation coming
first as ``stop_or_liquidation`` decides, before limit orders of the same bar. Reduce-only
orders lock nothing, fill at most the position and lapse when it is closed. Amounts are not
rounded (as a backtest without ``market=``), and no funding is settled (as a backtest with
``funding=None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import cast

import numpy as np
import pandas as pd

from workbench.engine import core as e
from workbench.errors import DuplicateOrder, ExchangeError, InsufficientFunds, InvalidOrder, OrderNotFound
from workbench.exchange._clock import ReplayClock
from workbench.exchange._paper_store import MemoryPaperStore, PaperAccount, PaperPosition, PaperStore
from workbench.exchange._types import MARKET_TYPES, Balance, Exchange, Fill, Market, Order, Position

_TOLERANCE = 1e-9  # relative: float sizing that spends "all the cash" may exceed it by an ulp
_MAINTENANCE_MARGIN = 0.005  # the backtest's default


def _d(value: float) -> Decimal:
    """A float as the Decimal that converts back to exactly the same float."""
    return Decimal(repr(float(value)))


class PaperExchange(Exchange):
    """Simulated trading of ``candles`` (a tidy frame, or a mapping of symbol to frames of one
    timeframe). ``fees`` is a rate or ``{"maker": .., "taker": ..}`` and ``slippage`` a fraction,
    as in ``workbench.backtest``; ``balance`` is the starting cash of a new ``account`` in the
    quote currency. State lives in ``store`` (default: this process's memory)."""

    name = "paper"
    order_types = ("market", "limit", "stop")

    def __init__(
        self,
        candles: pd.DataFrame | Mapping[str, pd.DataFrame],
        *,
        clock: ReplayClock | None = None,
        market_type: str = "spot",
        account: str = "paper",
        store: PaperStore | None = None,
        balance: float = 10_000.0,
        fees: float | Mapping[str, float] = 0.001,
        slippage: float = 0.0005,
        maintenance_margin: float = _MAINTENANCE_MARGIN,
    ) -> None:
        if market_type not in MARKET_TYPES:
            raise ExchangeError(f"paper: market_type {market_type!r}; use one of {MARKET_TYPES}")
        frames = dict(candles) if isinstance(candles, Mapping) else {candles.attrs.get("symbol", "BTC/USD"): candles}
        suffix = (lambda s: f"{s}:{s.split('/')[1]}") if market_type == "swap" else (lambda s: s)
        self._candles = {suffix(symbol): frame for symbol, frame in frames.items()}
        self.market_type, self.account = market_type, account
        self.clock = clock or ReplayClock(next(iter(self._candles.values())))
        self._store = store or MemoryPaperStore()
        self._balance = float(balance)
        maker, taker = (fees.get("maker", 0.0), fees.get("taker", 0.0)) if isinstance(fees, Mapping) else (fees, fees)
        for label, value in (("fees (maker)", maker), ("fees (taker)", taker), ("slippage", slippage)):
            if not 0.0 <= float(value) <= 0.1:
                raise ExchangeError(f"paper: {label} {value!r} must be between 0 and 0.1 (a fraction, 0.001 = 0.1%)")
        self._fees = {"maker": float(maker), "taker": float(taker)}
        self._slippage = float(slippage)
        self._mmr = float(maintenance_margin)
        quotes = {symbol.split("/")[1].split(":")[0] for symbol in self._candles}
        if len(quotes) != 1:
            raise ExchangeError(f"paper: one account holds one quote currency; the candles quote {sorted(quotes)}")
        self._currency = quotes.pop()
        self._markets = {symbol: self._market(symbol) for symbol in self._candles}

    def _market(self, symbol: str) -> Market:
        base, quote = symbol.split(":")[0].split("/")
        return Market(
            symbol=symbol,
            id=symbol,
            type=self.market_type,
            base=base,
            quote=quote,
            settle=quote if self.market_type == "swap" else None,
            contract_size=Decimal(1),
            amount_step=Decimal(0),
            price_step=Decimal(0),
            min_amount=None,
            min_cost=None,
            max_leverage=Decimal(100) if self.market_type == "swap" else Decimal(1),
            maker_fee=_d(self._fees["maker"]),
            taker_fee=_d(self._fees["taker"]),
        )

    # -- the account, loaded and matched up to "now" on every call ----------------------
    def _load(self) -> PaperAccount:
        state = self._store.load(self.account) or PaperAccount(self._currency, self._balance)
        if state.currency != self._currency:
            raise ExchangeError(f"paper account {self.account!r} holds {state.currency}, not {self._currency}")
        if state.synced != self.clock.now:
            self._match_closed_bars(state)
            self._store.save(self.account, state)
        return state

    def _cfg(self, leverage: float) -> np.ndarray:
        cfg = np.zeros(e.CFG_SIZE)
        cfg[e.C_INIT_CASH] = self._balance
        cfg[e.C_FEE_TAKER], cfg[e.C_FEE_MAKER] = self._fees["taker"], self._fees["maker"]
        cfg[e.C_SLIPPAGE], cfg[e.C_LEVERAGE], cfg[e.C_MMR] = self._slippage, leverage, self._mmr
        cfg[e.C_MAX_POSITION] = cfg[e.C_MAX_DAILY_LOSS] = np.inf
        return cfg

    @staticmethod
    def _vector(state: PaperAccount, position: PaperPosition) -> np.ndarray:
        vector = np.zeros(e.STATE_SIZE)
        vector[e.CASH], vector[e.UNITS] = state.cash, position.units
        vector[e.ENTRY], vector[e.MARGIN] = position.entry, position.margin
        return vector

    def _trade(
        self, state: PaperAccount, order: Order, size: float, price: float, fee_rate: float, when: datetime, taker: bool
    ) -> Order:
        """Fill ``size`` (signed) of ``order`` at ``price`` through the engine's ``fill``."""
        position = state.positions.get(order.symbol, PaperPosition())
        vector, record = self._vector(state, position), np.zeros((1, 5))
        e.fill(vector, self._cfg(position.leverage), record, 0, size, price, fee_rate, e.FILL_ENTRY)
        self._store_vector(state, order.symbol, vector, position.leverage)
        amount = _d(abs(size))
        filled = order.filled + amount
        average = _d(price) if order.average is None else (order.average * order.filled + _d(price) * amount) / filled
        done = filled >= order.amount
        updated = replace(order, filled=filled, average=average, status="closed" if done else order.status)
        state.orders[order.id] = updated
        state.fills.append(
            Fill(
                id=f"T{state.next_id}",
                order_id=order.id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                amount=amount,
                price=_d(price),
                fee=_d(record[0, 3]),
                fee_currency=self._currency,
                timestamp=when,
                taker=taker,
            )
        )
        state.next_id += 1
        return updated

    @staticmethod
    def _store_vector(state: PaperAccount, symbol: str, vector: np.ndarray, leverage: float) -> None:
        state.cash = float(vector[e.CASH])
        state.positions[symbol] = PaperPosition(
            float(vector[e.UNITS]), float(vector[e.ENTRY]), float(vector[e.MARGIN]), leverage
        )

    def _match_closed_bars(self, state: PaperAccount) -> None:
        """Liquidations, stops and resting limit orders, bar by bar, for every bar closed since the last call."""
        for symbol, candles in self._candles.items():
            times = candles.index
            first = 0 if state.synced is None else int(times.searchsorted(pd.Timestamp(state.synced)))
            last = int(times.searchsorted(pd.Timestamp(self.clock.now)))
            resting = [o for o in state.orders.values() if o.symbol == symbol and o.status == "open"]
            if not resting and not state.positions.get(symbol, PaperPosition()).units:
                continue
            opens, highs, lows, closes = (candles[c].to_numpy() for c in ("open", "high", "low", "close"))
            for j in range(first, last):
                self._match_bar(state, symbol, times[j].to_pydatetime(), opens[j], highs[j], lows[j], closes[j])
        state.synced = self.clock.now

    def _match_bar(
        self, state: PaperAccount, symbol: str, when: datetime, open_: float, high: float, low: float, close: float
    ) -> None:
        """One bar, in the engine's order: the position's stop or liquidation (worst case first,
        ``stop_or_liquidation``), other stops, then limit orders along the bar's likely path
        (a rising bar goes open-low-high-close, so buys fill before sells; a falling bar the
        reverse; the nearer price first on each side), as the templates assume."""
        live = [
            o
            for o in state.orders.values()
            if o.symbol == symbol and o.status == "open" and cast(datetime, o.timestamp) <= when
        ]
        position = state.positions.get(symbol, PaperPosition())
        stops = [o for o in live if o.type == "stop"]
        protective = next(
            (o for o in stops if position.units and o.reduce_only and (o.side == "sell") == (position.units > 0)), None
        )
        if position.units:
            kind, price = e.stop_or_liquidation(
                self._vector(state, position),
                self._cfg(position.leverage),
                np.nan if protective is None else float(cast(Decimal, protective.price)),
                open_,
                high,
                low,
            )
            if kind == e.FILL_LIQUIDATION:
                self._liquidate(state, symbol, when, price)
            elif kind == e.FILL_STOP:
                self._fill_resting(state, cast(Order, protective), price, self._fees["taker"], when, taker=True)
        for order in stops:
            if state.orders[order.id].status == "open" and order is not protective:
                side = 1 if order.side == "buy" else -1
                price = e.stop_fill(side, float(cast(Decimal, order.price)), open_, high, low, self._cfg(1.0))
                if not math.isnan(price):
                    self._fill_resting(state, order, price, self._fees["taker"], when, taker=True)
        rising = close >= open_
        limits = sorted(
            (o for o in live if o.type == "limit"),
            key=lambda o: (
                (o.side == "buy") != rising,
                -float(cast(Decimal, o.price)) if o.side == "buy" else float(cast(Decimal, o.price)),
            ),
        )
        for order in limits:
            if state.orders[order.id].status != "open":
                continue
            side = 1 if order.side == "buy" else -1
            limit = float(cast(Decimal, order.price))
            cfg = self._cfg(state.positions.get(symbol, PaperPosition()).leverage)
            price, fee_rate = e.limit_fill(side, limit, open_, high, low, cfg)
            if not math.isnan(price):
                opened_through = open_ <= limit if side > 0 else open_ >= limit
                self._fill_resting(state, order, price, fee_rate, when, taker=bool(opened_through))
        self._cancel_spent_reduce_only(state, symbol)

    def _fill_resting(
        self, state: PaperAccount, order: Order, price: float, fee_rate: float, when: datetime, taker: bool
    ) -> None:
        """Fill what is left of a resting order; a reduce-only one at most the position it reduces."""
        order = state.orders[order.id]
        side = 1.0 if order.side == "buy" else -1.0
        size = float(order.remaining)
        if order.reduce_only:
            units = state.positions.get(order.symbol, PaperPosition()).units
            size = min(size, abs(units)) if units and (units > 0) != (side > 0) else 0.0
        if size > 0.0:
            self._trade(state, order, side * size, price, fee_rate, when, taker=taker)

    @staticmethod
    def _cancel_spent_reduce_only(state: PaperAccount, symbol: str) -> None:
        """Reduce-only orders lapse once the position they reduce is closed (as on Binance futures)."""
        units = state.positions.get(symbol, PaperPosition()).units
        for order in list(state.orders.values()):
            if (
                order.symbol == symbol
                and order.status == "open"
                and order.reduce_only
                and (not units or (units > 0) == (order.side == "buy"))
            ):
                state.orders[order.id] = replace(order, status="canceled")

    def _liquidate(self, state: PaperAccount, symbol: str, when: datetime, liq: float) -> None:
        position = state.positions.get(symbol, PaperPosition())
        vector = self._vector(state, position)
        record = np.zeros((1, 5))
        e.liquidate(vector, record, 0, liq)
        self._store_vector(state, symbol, vector, position.leverage)
        order = Order(
            id=f"L{state.next_id}",
            client_order_id=None,
            symbol=symbol,
            side="sell" if position.units > 0 else "buy",
            type="market",
            amount=_d(abs(position.units)),
            price=None,
            filled=_d(abs(position.units)),
            average=_d(liq),
            status="closed",
            timestamp=when,
        )
        state.orders[order.id] = order
        state.fills.append(
            Fill(
                id=f"T{state.next_id}",
                order_id=order.id,
                client_order_id=None,
                symbol=symbol,
                side=order.side,
                amount=order.amount,
                price=_d(liq),
                fee=_d(record[0, 3]),
                fee_currency=self._currency,
                timestamp=when,
                taker=True,
            )
        )
        state.next_id += 1

    def _price_now(self, symbol: str) -> float:
        """The forming bar's open; after the replay, the last close."""
        candles = self._candles[symbol]
        if self.clock.finished:
            return float(candles["close"].iloc[-1])
        return float(candles["open"].iloc[int(candles.index.searchsorted(pd.Timestamp(self.clock.now)))])

    # -- the interface ------------------------------------------------------------------
    def markets(self, reload: bool = False) -> dict[str, Market]:
        return self._markets

    def _round_amount(self, market: Market, amount: Decimal) -> Decimal:
        return amount

    def _round_price(self, market: Market, price: Decimal) -> Decimal:
        return price

    def now(self) -> datetime:
        return self.clock.now

    def fetch_ohlcv(
        self, symbol: str, timeframe: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Closed candles only: those that opened before "now"; a coarser ``timeframe`` is resampled."""
        from workbench.data import resample

        candles = self._candles[self.market(symbol).symbol]
        closed = candles[candles.index < pd.Timestamp(self.clock.now)]
        if timeframe is not None and timeframe != candles.attrs.get("timeframe"):
            closed = resample(closed, timeframe)
        if since is not None:
            closed = closed[closed.index >= pd.Timestamp(since)]
        return closed.tail(limit) if limit else closed

    def fetch_price(self, symbol: str, timeframe: str | None = None) -> Decimal:
        """The forming bar's open (after the replay: the last close)."""
        return _d(self._price_now(self.market(symbol).symbol))

    def fetch_balance(self) -> dict[str, Balance]:
        state = self._load()
        locked = self._locked(state)
        margin = sum(p.margin for p in state.positions.values()) if self.market_type == "swap" else 0.0
        cash = state.cash
        balances = {
            self._currency: Balance(
                self._currency,
                _d(cash - locked.get(self._currency, 0.0)),
                _d(margin + locked.get(self._currency, 0.0)),
                _d(cash + margin),
            )
        }
        if self.market_type == "spot":
            for symbol, position in state.positions.items():
                base = self._markets[symbol].base
                held = locked.get(base, 0.0)
                balances[base] = Balance(base, _d(position.units - held), _d(held), _d(position.units))
        return balances

    def _locked(self, state: PaperAccount) -> dict[str, float]:
        """What resting orders hold: the quote they may spend, or (spot sells) the base they sell."""
        locked: dict[str, float] = {}
        worst_fee = max(self._fees.values())
        for order in state.orders.values():
            if order.status != "open" or order.reduce_only:  # a reduce-only order only releases
                continue
            remaining, price = float(order.remaining), float(cast(Decimal, order.price))
            leverage = state.positions.get(order.symbol, PaperPosition()).leverage
            if self.market_type == "spot" and order.side == "sell":
                asset, amount = self._markets[order.symbol].base, remaining
            else:
                asset, amount = self._currency, remaining * price * (1.0 / leverage + worst_fee)
            locked[asset] = locked.get(asset, 0.0) + amount
        return locked

    def fetch_position(self, symbol: str) -> Position:
        symbol = self.market(symbol).symbol
        position = self._load().positions.get(symbol, PaperPosition())
        if not position.units:
            return Position(symbol, Decimal(0))
        if self.market_type == "spot":
            return Position(symbol, _d(position.units), _d(position.entry))
        cfg, vector = self._cfg(position.leverage), self._vector(PaperAccount(self._currency, 0.0), position)
        liq = e.liquidation_price(vector, cfg)
        return Position(
            symbol,
            _d(position.units),
            _d(position.entry),
            _d(position.leverage),
            _d(position.units * (self._price_now(symbol) - position.entry)),
            _d(position.margin),
            None if math.isnan(liq) else _d(liq),
        )

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        symbol = self.market(symbol).symbol
        return [o for o in self._load().orders.values() if o.symbol == symbol and o.status == "open"]

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> Order | None:
        symbol = self.market(symbol).symbol
        return next(
            (o for o in self._load().orders.values() if o.symbol == symbol and o.client_order_id == client_order_id),
            None,
        )

    def fetch_my_trades(self, symbol: str, since: datetime | None = None, until: datetime | None = None) -> list[Fill]:
        symbol = self.market(symbol).symbol
        return [
            f
            for f in self._load().fills
            if f.symbol == symbol and (since is None or f.timestamp >= since) and (until is None or f.timestamp < until)
        ]

    def fetch_order(self, symbol: str, order_id: str) -> Order | None:
        order = self._load().orders.get(order_id)
        return order if order is not None and order.symbol == self.market(symbol).symbol else None

    def fetch_orders(self, symbol: str, since: datetime, until: datetime | None = None) -> list[Order]:
        symbol = self.market(symbol).symbol
        return [
            o
            for o in self._load().orders.values()
            if o.symbol == symbol
            and o.timestamp is not None
            and o.timestamp >= since
            and (until is None or o.timestamp < until)
        ]

    def _place(
        self,
        market: Market,
        side: str,
        type: str,
        amount: Decimal,
        price: Decimal | None,
        client_order_id: str,
        reduce_only: bool,
    ) -> Order:
        state = self._load()
        if any(o.client_order_id == client_order_id for o in state.orders.values()):
            raise DuplicateOrder(f"paper {market.symbol}: client order id {client_order_id!r} was used before")
        if self.clock.finished:
            raise InvalidOrder(f"paper {market.symbol}: the replay has ended at {self.clock.now}; nothing trades")
        position = state.positions.get(market.symbol, PaperPosition())
        sign = 1.0 if side == "buy" else -1.0
        size = float(amount)
        if reduce_only and (not position.units or (position.units > 0) == (sign > 0) or size > abs(position.units)):
            raise InvalidOrder(
                f"paper {market.symbol}: a reduce-only {side} of {amount} would not reduce the "
                f"position of {position.units}"
            )
        if type == "market":
            open_ = self._price_now(market.symbol)
            fill_price = open_ * (1.0 + self._slippage) if sign > 0 else open_ * (1.0 - self._slippage)
            if not reduce_only:
                self._check_funds(state, market, side, size, fill_price, self._fees["taker"])
        elif not reduce_only:
            self._check_funds(state, market, side, size, float(cast(Decimal, price)), max(self._fees.values()))
        order = Order(
            id=f"P{state.next_id}",
            client_order_id=client_order_id,
            symbol=market.symbol,
            side=side,
            type=type,
            amount=amount,
            price=price if type != "market" else None,
            filled=Decimal(0),
            average=None,
            status="open",
            timestamp=self.clock.now,
            reduce_only=reduce_only,
        )
        state.next_id += 1
        state.orders[order.id] = order
        if type == "market":
            order = self._trade(state, order, sign * size, fill_price, self._fees["taker"], self.clock.now, taker=True)
        self._store.save(self.account, state)
        return order

    def _check_funds(
        self, state: PaperAccount, market: Market, side: str, size: float, price: float, fee_rate: float
    ) -> None:
        position = state.positions.get(market.symbol, PaperPosition())
        locked = self._locked(state)
        if self.market_type == "spot" and side == "sell":
            free = position.units - locked.get(market.base, 0.0)
            if size > free * (1 + _TOLERANCE):
                raise InsufficientFunds(f"paper {market.symbol}: selling {size} {market.base} but only {free} is free")
            return
        closing = min(size, abs(position.units)) if position.units and (position.units > 0) == (side == "sell") else 0.0
        needed = (size - closing) * price / position.leverage + size * price * fee_rate
        free = state.cash - locked.get(self._currency, 0.0)
        if closing:  # closing releases its margin and realises its PnL first, as the engine's fill does
            direction = 1.0 if position.units > 0 else -1.0
            free += position.margin * closing / abs(position.units) + closing * (price - position.entry) * direction
        if needed > free * (1 + _TOLERANCE):
            raise InsufficientFunds(
                f"paper {market.symbol}: the {side} of {size} at {price:g} needs {needed:.8g} "
                f"{self._currency} but {free:.8g} is free"
            )

    def cancel_order(self, symbol: str, order_id: str) -> Order:
        state = self._load()
        order = state.orders.get(order_id)
        if order is None or order.symbol != self.market(symbol).symbol or order.status != "open":
            raise OrderNotFound(f"paper {symbol}: no open order {order_id!r}")
        state.orders[order_id] = order = replace(order, status="canceled")
        self._store.save(self.account, state)
        return order

    def set_leverage(self, symbol: str, leverage: int) -> None:
        market = self.market(symbol)
        if market.type != "swap":
            raise InvalidOrder(f"paper {symbol}: leverage is set on swaps only, not on {market.type}")
        if not 1 <= leverage <= cast(Decimal, market.max_leverage):
            raise InvalidOrder(f"paper {symbol}: leverage {leverage} is outside 1..{market.max_leverage}")
        state = self._load()
        position = state.positions.get(market.symbol, PaperPosition())
        if position.leverage == leverage:
            return
        if position.units:
            raise InvalidOrder(f"paper {symbol}: leverage cannot change while a position of {position.units} is open")
        state.positions[market.symbol] = replace(position, leverage=float(leverage))
        self._store.save(self.account, state)
