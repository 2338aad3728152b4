"""Exchanges behind one interface: ccxt clients (Gate, Binance) and the paper exchange.

A trading tick talks to any of them the same way::

    from workbench.exchange import open_exchange
    ex = open_exchange("binance", api_key=keys.api_key, secret=keys.secret, market_type="swap")
    ex = open_exchange("paper", candles=wb.load_candles(), market_type="swap")  # replayed history

    ex.markets(); ex.market("BTC/USDT:USDT")          # Market: precision, limits, contract size
    ex.now()                                         # exchange time (paper: the replay clock)
    ex.fetch_ohlcv(symbol, "1h")                     # closed candles, a tidy candle frame
    ex.fetch_price(symbol, "1h")                     # the forming candle's open: what orders are sized at
    ex.fetch_balance()                               # {currency: Balance}
    ex.fetch_position(symbol)                        # Position (signed base units; spot: base held)
    ex.fetch_open_orders(symbol)                     # [Order], resting stops included
    ex.fetch_order_by_client_id(symbol, cid)         # Order or None: was it accepted?
    ex.create_order(symbol, "buy", "limit", amount, price, client_order_id=cid)
    ex.order_types                                   # ("market", "limit", "stop" where the venue has native stops)
    ex.fetch_order(symbol, "price-17")               # a stop resting apart (Gate price order; Binance USDⓈ-M "algo-…"),
                                                     # once triggered the order it placed, under the stop's client id
    capability(ex, market)                           # what the venue supports there (CAPABILITIES)
    ex.cancel_order(symbol, order_id)
    ex.fetch_my_trades(symbol, since)                # [Fill], oldest first
    ex.fetch_funding_payments(symbol, since)         # [FundingPayment] booked on a perpetual
    ex.set_leverage(symbol, 5)                       # swaps only

Money is ``Decimal``; amounts are base units everywhere (contracts are converted). Orders
are rounded to the market's precision and checked against its limits before they are sent.
Failures raise ``workbench.errors.ExchangeError`` subclasses (``AuthenticationFailed``,
``InsufficientFunds``, ``InvalidOrder``/``DuplicateOrder``, ``OrderNotFound``,
``RateLimited`` with ``retry_after``, ``ExchangeUnavailable`` when the outcome is unknown),
never showing keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports
from workbench.exchange._capabilities import CAPABILITIES, Capability, capability
from workbench.exchange._registry import open_exchange, register
from workbench.exchange._types import Balance, Exchange, Fill, FundingPayment, Market, Order, Position

# loaded on first use: the ccxt client pulls in ccxt, the paper exchange numba
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "CcxtExchange": "workbench.exchange._ccxt:CcxtExchange",
        "PaperExchange": "workbench.exchange._paper:PaperExchange",
        "ReplayClock": "workbench.exchange._clock:ReplayClock",
        "PaperStore": "workbench.exchange._paper_store:PaperStore",
        "PaperAccount": "workbench.exchange._paper_store:PaperAccount",
        "PaperPosition": "workbench.exchange._paper_store:PaperPosition",
        "MemoryPaperStore": "workbench.exchange._paper_store:MemoryPaperStore",
        "PostgresPaperStore": "workbench.exchange._paper_pg:PostgresPaperStore",
    },
    eager=[
        "Balance",
        "CAPABILITIES",
        "Capability",
        "Exchange",
        "Fill",
        "FundingPayment",
        "Market",
        "Order",
        "Position",
        "capability",
        "open_exchange",
        "register",
    ],
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.exchange._ccxt import CcxtExchange
    from workbench.exchange._clock import ReplayClock
    from workbench.exchange._paper import PaperExchange
    from workbench.exchange._paper_pg import PostgresPaperStore
    from workbench.exchange._paper_store import MemoryPaperStore, PaperAccount, PaperPosition, PaperStore
