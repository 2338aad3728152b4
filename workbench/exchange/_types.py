"""The exchange interface a trading tick uses, and the plain records it returns.

Money and quantities are ``decimal.Decimal``: exchanges speak decimal strings, precision
steps (0.00001 BTC) are exact only in decimal, and the store keeps ``Numeric`` columns, so
nothing is lost between the exchange, the tick and the database. (The paper exchange
computes fills in float64, exactly as the backtest engine does, and converts each result
with ``Decimal(repr(x))``, which converts back to the very same float.)

Amounts are always in BASE currency units, also on swaps (the ccxt adapter converts to and
from contracts with the market's ``contract_size``), and positions are signed (+ long).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from workbench.errors import InvalidOrder

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MARKET_TYPES = ("spot", "swap")
SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop")  # "stop": stop-market, ``price`` is the trigger
# the strictest venue's rule (Gate: at most 28 characters after its "t-" prefix)
_CLIENT_ID = re.compile(r"[0-9A-Za-z_.-]{1,28}")


@dataclass(frozen=True)
class Market:
    """A market's identity, precision and limits; quantities in base units."""

    symbol: str  # unified: "BTC/USDT" (spot), "BTC/USDT:USDT" (USDT-margined perpetual)
    id: str  # the exchange's own id ("BTCUSDT", "BTC_USDT")
    type: str  # "spot" or "swap"
    base: str
    quote: str
    settle: str | None  # swaps: the margin currency
    contract_size: Decimal  # base units per contract; 1 on spot
    amount_step: Decimal  # amounts are multiples of this (base units)
    price_step: Decimal
    min_amount: Decimal | None  # base units
    min_cost: Decimal | None  # quote currency
    max_leverage: Decimal | None
    maker_fee: Decimal | None
    taker_fee: Decimal | None
    active: bool = True  # False while the venue halts it or delists it


@dataclass(frozen=True)
class Balance:
    """One currency of the account. On swaps ``total`` is the wallet balance, without the
    positions' unrealised PnL, on every venue (they differ; the adapters agree)."""

    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True)
class Position:
    """What the account holds in one market: on swaps the perpetual position, on spot the
    base-currency balance. ``size`` is signed base units (+ long, - short, 0 flat)."""

    symbol: str
    size: Decimal
    entry_price: Decimal | None = None
    leverage: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    margin: Decimal | None = None
    liquidation_price: Decimal | None = None


@dataclass(frozen=True)
class Order:
    id: str
    client_order_id: str | None  # as the caller gave it (without Gate's "t-" prefix)
    symbol: str
    side: str  # "buy" | "sell"
    type: str  # "market" | "limit" | "stop"
    amount: Decimal  # base units
    price: Decimal | None  # the limit (or stop trigger) price; None for market orders
    filled: Decimal
    average: Decimal | None  # average fill price
    status: str  # "open" | "closed" | "canceled" | "expired" | "rejected" (the store's names)
    timestamp: datetime | None
    reduce_only: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True)
class Fill:
    """One trade of the account (a whole or partial fill of an order)."""

    id: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    amount: Decimal  # base units
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    timestamp: datetime
    taker: bool | None


@dataclass(frozen=True)
class FundingPayment:
    """Funding the exchange booked on the account's perpetual position at one settlement."""

    id: str  # the exchange's id of the booking (Binance's tranId; Gate's, else contract and time)
    symbol: str
    amount: Decimal  # in the settle currency, as booked: positive received, negative paid
    currency: str | None
    timestamp: datetime


class Exchange(ABC):
    """One account on one exchange, one market type. See the package docstring for the calls."""

    name: str
    market_type: str
    #: the order types this exchange accepts (a live session emulates the others)
    order_types: tuple[str, ...] = ("market", "limit")

    # -- markets ------------------------------------------------------------------------
    @abstractmethod
    def markets(self, reload: bool = False) -> dict[str, Market]:
        """The markets by unified symbol, loaded once per client; ``reload=True`` refreshes."""

    def market(self, symbol: str) -> Market:
        markets = self.markets()
        try:
            return markets[symbol]
        except KeyError:
            shown = ", ".join(sorted(markets)[:10])
            raise InvalidOrder(f"{self.name} {self.market_type}: no market {symbol!r}; known: {shown}") from None

    # -- reading ------------------------------------------------------------------------
    @abstractmethod
    def now(self) -> datetime:
        """The exchange's current time (UTC); the paper exchange's replay clock."""

    @abstractmethod
    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1h", since: datetime | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """CLOSED candles only, as the workbench's tidy candle frame (open times, oldest first)."""

    @abstractmethod
    def fetch_price(self, symbol: str, timeframe: str = "1m") -> Decimal:
        """The open of the forming candle of ``timeframe``: the price an order sent now is
        measured against (a backtest fills market orders at the next bar's open)."""

    @abstractmethod
    def fetch_balance(self) -> dict[str, Balance]:
        """Balances by currency (swaps: the futures wallet of the settle currency)."""

    @abstractmethod
    def fetch_position(self, symbol: str) -> Position:
        """The position in ``symbol``; a flat ``Position(size=0)`` when there is none."""

    @abstractmethod
    def fetch_open_orders(self, symbol: str) -> list[Order]: ...

    @abstractmethod
    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> Order | None:
        """The order placed with ``client_order_id``, whatever its state; None if the exchange
        has none (so it was never accepted: placing it again is safe)."""

    @abstractmethod
    def fetch_my_trades(self, symbol: str, since: datetime | None = None, until: datetime | None = None) -> list[Fill]:
        """The account's fills in ``symbol`` at or after ``since`` (and before ``until``), oldest first."""

    def fetch_funding_payments(
        self, symbol: str, since: datetime, until: datetime | None = None
    ) -> list[FundingPayment]:
        """Funding booked on the account's position in ``symbol`` at or after ``since`` (and
        before ``until``), oldest first; none where nothing settles funding (spot, paper)."""
        return []

    @abstractmethod
    def fetch_order(self, symbol: str, order_id: str) -> Order | None:
        """The order with the exchange's ``order_id``, or None when the exchange shows none
        (yet: a venue may show an accepted order only after a delay)."""

    @abstractmethod
    def fetch_orders(self, symbol: str, since: datetime, until: datetime | None = None) -> list[Order]:
        """The account's orders in ``symbol`` (open and finished) from ``since`` to ``until``
        (default now): the order history that settles an order whose outcome is unknown, and
        that reconciliation compares with the ledger."""

    # -- trading ------------------------------------------------------------------------
    def create_order(
        self,
        symbol: str,
        side: str,
        type: str,
        amount: Decimal | float | str,
        price: Decimal | float | str | None = None,
        *,
        client_order_id: str,
        reduce_only: bool = False,
    ) -> Order:
        """Place an order under the caller's deterministic ``client_order_id``.

        ``amount`` (base units) and ``price`` are rounded to the market's precision and
        checked against its limits before anything is sent (``InvalidOrder``). For market
        orders ``price`` is optional: a reference price (e.g. the last close) for the
        minimum-cost check. Placing the same client order id twice is refused by the
        exchange (``DuplicateOrder``).
        """
        if side not in SIDES or type not in self.order_types:
            raise InvalidOrder(
                f"{self.name}: order side {side!r} / type {type!r}; use one of {SIDES} / {self.order_types}"
            )
        if not isinstance(client_order_id, str) or not _CLIENT_ID.fullmatch(client_order_id):
            raise InvalidOrder(
                f"{self.name}: client_order_id {client_order_id!r} must be 1-28 characters "
                "of letters, digits, '_', '-' or '.'"
            )
        market = self.market(symbol)
        amount, price = self.normalize_order(symbol, amount, price, type=type, reduce_only=reduce_only)
        return self._place(market, side, type, amount, price, client_order_id, reduce_only)

    def normalize_order(
        self,
        symbol: str,
        amount: Decimal | float | str,
        price: Decimal | float | str | None = None,
        *,
        type: str = "limit",
        reduce_only: bool = False,
    ) -> tuple[Decimal, Decimal | None]:
        """``(amount, price)`` rounded as the exchange requires (amount down to its step,
        price to the nearest tick), or ``InvalidOrder`` naming the limit they break.

        A reduce-only order on a perpetual is exempt from the minimum order value, so a
        position below it can still be closed or protected (Binance USDⓈ-M error -4164:
        "Order's notional must be no smaller than 100 (unless you choose reduce only)",
        https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code)."""
        market = self.market(symbol)
        what = f"{self.name} {symbol}"
        raw_amount = _decimal(amount, "amount", what)
        if type in ("limit", "stop") and price is None:
            raise InvalidOrder(f"{what}: a {type} order needs a price")
        raw_price = None if price is None else _decimal(price, "price", what)
        if raw_amount <= 0 or (raw_price is not None and raw_price <= 0):
            raise InvalidOrder(f"{what}: amount {raw_amount} and price {raw_price} must be positive")
        rounded = self._round_amount(market, raw_amount)
        minimum = max(market.min_amount or Decimal(0), market.amount_step)
        if rounded < minimum:
            raise InvalidOrder(
                f"{what}: amount {raw_amount} (rounded to step {market.amount_step}: {rounded}) "
                f"is below the market's minimum amount {minimum}"
            )
        rounded_price = None if raw_price is None else self._round_price(market, raw_price)
        exempt = reduce_only and market.type == "swap"
        if (
            rounded_price is not None
            and market.min_cost is not None
            and not exempt
            and rounded * rounded_price < market.min_cost
        ):
            raise InvalidOrder(
                f"{what}: order cost {rounded} x {rounded_price} = {rounded * rounded_price} "
                f"is below the market's minimum cost {market.min_cost} {market.quote}"
            )
        return rounded, rounded_price

    def _round_amount(self, market: Market, amount: Decimal) -> Decimal:
        return (amount / market.amount_step).to_integral_value(ROUND_DOWN) * market.amount_step

    def _round_price(self, market: Market, price: Decimal) -> Decimal:
        return (price / market.price_step).to_integral_value(ROUND_HALF_UP) * market.price_step

    @abstractmethod
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
        """Send an already rounded and checked order; ``price`` is the limit price, or the
        market order's reference price (or None)."""

    @abstractmethod
    def cancel_order(self, symbol: str, order_id: str) -> Order:
        """Cancel an open order (by the exchange's id); ``OrderNotFound`` if there is none."""

    def is_liquidation(self, fill: Fill) -> bool:
        """Whether ``fill`` is the venue's liquidation engine closing a position (no order of
        anyone's); the default venue has none that shows as a trade."""
        return False

    @abstractmethod
    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Swaps only: isolated margin at ``leverage`` for ``symbol``'s position (what the
        backtest models: a liquidation takes the position's margin, never the whole wallet)."""

    def close(self) -> None:  # noqa: B027 - optional: most exchanges hold no connection
        """Release connections; the default has none."""

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.market_type}>"


def _decimal(value: Decimal | float | str, name: str, what: str) -> Decimal:
    try:
        number = (
            value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
        )
    except ArithmeticError:
        raise InvalidOrder(f"{what}: {name} {value!r} is not a number") from None
    if not number.is_finite():
        raise InvalidOrder(f"{what}: {name} {value!r} is not a finite number")
    return number
