"""What a venue charges and accepts, for backtests that trade as the exchange would let them.

``fees="binance"`` (or ``"gate swap"``, ``"binance swap vip3"``) takes the venue's maker and
taker rates from ccxt's fee schedule (``describe()["fees"]`` of the installed ccxt: VIP 0 is
its headline rate, ``vipN`` row N of its tier table). ``market="binance BTC/USDT:USDT"``
takes a market's rules from the snapshot below, and ``market=`` also takes the ``Market`` a
connected exchange gives (``wb.open_exchange(...).market(symbol)``), which has the same
attributes: amounts are rounded down to the amount step, an order that opens or adds below
the minimum amount or cost is not placed, limit and stop prices sit on the price tick, and
the leverage may not exceed the market's.

The snapshot holds the markets people backtest most (BTC and ETH against USDT, spot and
USDT-margined perpetual). Spot values are ccxt's own market fixtures
(``ts/src/test/static/markets/binance.json`` and ``gate.json``: Binance ``LOT_SIZE``,
``PRICE_FILTER``, ``NOTIONAL``; Gate ``amount_precision``, ``precision``, ``min_base_amount``,
``min_quote_amount``); perpetuals are the venues' contract specifications (Binance USDⓈ-M
``exchangeInfo`` BTCUSDT: ``tickSize`` 0.10, ``stepSize`` 0.001, ``MIN_NOTIONAL`` 100, leverage
up to 125; Gate ``/futures/usdt/contracts`` BTC_USDT: ``quanto_multiplier`` 0.0001,
``order_price_round`` 0.1, ``order_size_min`` 1 contract, ``leverage_max`` 100). Venues change
them; a connected exchange's ``Market`` is always current.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workbench.errors import ParameterError

_VENUES = ("binance", "gate")
_MARKET_TYPES = ("spot", "swap")


@dataclass(frozen=True)
class MarketRules:
    """A market's trading rules in base units and the quote currency (0: no rule)."""

    symbol: str
    amount_step: float
    price_step: float
    min_amount: float
    min_cost: float
    max_leverage: float


SNAPSHOT: dict[tuple[str, str], MarketRules] = {
    ("binance", "BTC/USDT"): MarketRules("BTC/USDT", 0.00001, 0.01, 0.00001, 5.0, 1.0),
    ("binance", "ETH/USDT"): MarketRules("ETH/USDT", 0.0001, 0.01, 0.0001, 5.0, 1.0),
    ("binance", "BTC/USDT:USDT"): MarketRules("BTC/USDT:USDT", 0.001, 0.1, 0.001, 100.0, 125.0),
    ("binance", "ETH/USDT:USDT"): MarketRules("ETH/USDT:USDT", 0.001, 0.01, 0.001, 20.0, 125.0),
    ("gate", "BTC/USDT"): MarketRules("BTC/USDT", 0.000001, 0.1, 0.000001, 3.0, 1.0),
    ("gate", "ETH/USDT"): MarketRules("ETH/USDT", 0.0001, 0.01, 0.001, 3.0, 1.0),
    ("gate", "BTC/USDT:USDT"): MarketRules("BTC/USDT:USDT", 0.0001, 0.1, 0.0001, 0.0, 100.0),
    ("gate", "ETH/USDT:USDT"): MarketRules("ETH/USDT:USDT", 0.01, 0.01, 0.01, 0.0, 100.0),
}


def market_rules(market: Any) -> MarketRules | None:
    """The rules of ``market``: None, ``"<venue> <symbol>"`` from the snapshot, or an object
    with ``amount_step``, ``price_step``, ``min_amount``, ``min_cost`` and ``max_leverage``
    (an exchange's ``Market``)."""
    if market is None:
        return None
    if isinstance(market, str):
        venue, _, symbol = market.strip().partition(" ")
        rules = SNAPSHOT.get((venue.lower(), symbol.strip()))
        if rules is None:
            known = ", ".join(f"'{v} {s}'" for v, s in SNAPSHOT)
            raise ParameterError(f"market: {market!r} is not in the bundled snapshot; use one of {known}, or "
                                 "the Market of a connected exchange (wb.open_exchange(...).market(symbol))",
                                 param="market", value=market)
        return rules
    try:
        return MarketRules(str(market.symbol), float(market.amount_step or 0), float(market.price_step or 0),
                      float(market.min_amount or 0), float(market.min_cost or 0), float(market.max_leverage or 1))
    except AttributeError as exc:
        raise ParameterError(f"market: {type(market).__name__} is not a market; give '<venue> <symbol>' or an "
                             f"exchange's Market ({exc})", param="market", value=market) from None


def venue_fees(spec: str, market: MarketRules | None) -> dict[str, float]:
    """Maker and taker rates named by ``spec``: ``"<venue>[ spot|swap][ vip<N>]"``. Without a
    market type the market's decides (a symbol with a settle currency is a swap), else spot."""
    words = spec.lower().split()
    venue = words[0] if words else ""
    if venue not in _VENUES:
        raise ParameterError(f"fees: {spec!r} names no venue; use a rate, {{'maker': .., 'taker': ..}}, or "
                             f"'<venue>[ spot|swap][ vipN]' with venue {' or '.join(_VENUES)}", param="fees", value=spec)
    kind = "swap" if market is not None and ":" in market.symbol else "spot"
    tier = 0
    for word in words[1:]:
        if word in _MARKET_TYPES:
            kind = word
        elif re.fullmatch(r"vip\d+", word):
            tier = int(word[3:])
        else:
            raise ParameterError(f"fees: {word!r} in {spec!r} is neither spot, swap nor vipN", param="fees", value=spec)
    schedule = _schedule(venue, kind)
    if tier == 0:
        return {"maker": float(schedule["maker"]), "taker": float(schedule["taker"])}
    tiers = schedule.get("tiers") or {}
    rows = min(len(tiers.get("maker", ())), len(tiers.get("taker", ())))
    if tier >= rows:
        raise ParameterError(f"fees: {venue} {kind} has tiers vip0 to vip{max(rows - 1, 0)} in ccxt's schedule; "
                             f"got vip{tier}", param="fees", value=spec)
    return {"maker": float(tiers["maker"][tier][1]), "taker": float(tiers["taker"][tier][1])}


def _schedule(venue: str, kind: str) -> dict[str, Any]:
    """ccxt's trading fees of a venue's market type (no network: the class's description)."""
    import ccxt

    fees = getattr(ccxt, venue)().describe()["fees"]
    if kind == "spot":
        return fees["trading"]
    return fees["linear"]["trading"] if "linear" in fees else fees["swap"]
