"""What each venue and market type supports natively, so a session is refused at creation
rather than failing live.

A stop-loss is the exchange's own stop order, resting with the entry so it closes the
position even when no tick runs (the process dead, the session in error, the machine off):

* Binance spot: ``STOP_LOSS_LIMIT`` (a limit order released when the last price reaches
  ``stopPrice``; binance-spot-api-docs ``rest-api.md``, "New order": STOP_LOSS_LIMIT needs
  ``timeInForce, quantity, price, stopPrice``). Spot has no reduce-only; the stop sells base held.
* Binance USDⓈ-M: ``STOP_MARKET`` with ``reduceOnly`` (since 2025-12 conditional orders
  are "algo orders", ``POST /fapi/v1/algoOrder`` with ``algoType=CONDITIONAL``,
  ``triggerPrice`` and ``clientAlgoId``; Binance derivatives docs "New Algo Order").
* Gate spot: a price-triggered order (``POST /spot/price_orders``: ``trigger`` {price, rule
  "<=", expiration}, ``put`` a limit order, "Only limit orders are supported as the triggered
  order type"; gateapi ``SpotPriceTriggeredOrder.md``). It holds no balance until it triggers,
  so a sell that then finds too little base fails; it lapses after ``expiration`` (the adapter
  asks for 30 days).
* Gate USDT perpetuals: a price-triggered order placing a reduce-only market order
  (``POST /futures/usdt/price_orders``: ``initial`` {size, price "0", tif "ioc", reduce_only},
  ``trigger`` {price, rule 2 "<=" closing a long, 1 ">=" a short}; ``FuturesPriceTriggeredOrder.md``).
* The paper exchange: a stop-market order filled by the backtest engine's ``stop_fill``.

Take-profits are reduce-only limit orders resting on the book on every venue. When a bar
reaches both a resting stop (or take-profit) and an entry level, the stop and take-profit
are served first, then limit orders along the bar's likely path (the engine's rule, which
the paper exchange applies bar for bar; see ``workbench.exchange._paper``), so paper and
backtest agree fill for fill.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.exchange._types import Exchange, Market


@dataclass(frozen=True)
class Capability:
    """One venue's market type."""

    stop_loss: bool  # an exchange-native stop order that closes the position
    take_profit: bool  # resting reduce-only (swap) or plain (spot) limit orders
    reduce_only: bool  # orders that may only shrink the position
    stop_order: str | None  # what the venue calls the order a "stop" leg becomes

    @property
    def order_types(self) -> tuple[str, ...]:
        return ("market", "limit", "stop") if self.stop_loss else ("market", "limit")


CAPABILITIES: dict[tuple[str, str], Capability] = {
    ("binance", "spot"): Capability(True, True, False, "STOP_LOSS_LIMIT"),
    ("binance", "swap"): Capability(True, True, True, "STOP_MARKET reduceOnly (algo order)"),
    ("gate", "spot"): Capability(True, True, False, "price-triggered order placing a limit order"),
    ("gate", "swap"): Capability(True, True, True, "price-triggered order placing a reduce-only market order"),
    ("paper", "spot"): Capability(True, True, False, "stop-market (the engine's stop rule)"),
    ("paper", "swap"): Capability(True, True, True, "stop-market (the engine's stop rule)"),
}


def capability(exchange: Exchange | str, market: Market | str) -> Capability:
    """The capability of ``exchange`` (an Exchange or its name) for ``market`` (a Market or a
    market type); an unknown venue supports market and limit orders only."""
    name = exchange if isinstance(exchange, str) else exchange.name
    kind = market if isinstance(market, str) else market.type
    return CAPABILITIES.get((name, kind), Capability(False, True, kind == "swap", None))
