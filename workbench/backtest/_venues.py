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

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

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
            raise ParameterError(
                f"market: {market!r} is not in the bundled snapshot; use one of {known}, or "
                "the Market of a connected exchange (wb.open_exchange(...).market(symbol))",
                param="market",
                value=market,
            )
        return rules
    try:
        return MarketRules(
            str(market.symbol),
            float(market.amount_step or 0),
            float(market.price_step or 0),
            float(market.min_amount or 0),
            float(market.min_cost or 0),
            float(market.max_leverage or 1),
        )
    except AttributeError as exc:
        raise ParameterError(
            f"market: {type(market).__name__} is not a market; give '<venue> <symbol>' or an exchange's Market ({exc})",
            param="market",
            value=market,
        ) from None


def venue_fees(spec: str, market: MarketRules | None) -> dict[str, float]:
    """Maker and taker rates named by ``spec``: ``"<venue>[ spot|swap][ vip<N>]"``. Without a
    market type the market's decides (a symbol with a settle currency is a swap), else spot."""
    words = spec.lower().split()
    venue = words[0] if words else ""
    if venue not in _VENUES:
        raise ParameterError(
            f"fees: {spec!r} names no venue; use a rate, {{'maker': .., 'taker': ..}}, or "
            f"'<venue>[ spot|swap][ vipN]' with venue {' or '.join(_VENUES)}",
            param="fees",
            value=spec,
        )
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
        raise ParameterError(
            f"fees: {venue} {kind} has tiers vip0 to vip{max(rows - 1, 0)} in ccxt's schedule; got vip{tier}",
            param="fees",
            value=spec,
        )
    return {"maker": float(tiers["maker"][tier][1]), "taker": float(tiers["taker"][tier][1])}


def _schedule(venue: str, kind: str) -> dict[str, Any]:
    """ccxt's trading fees of a venue's market type (no network: the class's description)."""
    import ccxt

    fees = getattr(ccxt, venue)().describe()["fees"]
    if kind == "spot":
        return fees["trading"]
    return fees["linear"]["trading"] if "linear" in fees else fees["swap"]


# -- maintenance margin tiers ------------------------------------------------------------
# ``maintenance_margin="binance"`` or ``"gate"``: the venue's tiers of its BTC/USDT perpetual,
# rows of (notional floor, maintenance margin rate, maintenance amount, max leverage). A
# position whose notional is N keeps N*rate - amount as maintenance margin in the tier that
# holds N; the amount makes the margin continue from one tier to the next (it is the sum of
# each lower floor times the rise of the rate there). Venues change their tiers: a connected
# exchange's ``fetch_leverage_tiers`` (ccxt) gives today's, and ``maintenance_margin=`` takes
# its rows (``minNotional``, ``maintenanceMarginRate``, ``maxLeverage``) as they are.
#
# Binance USDⓈ-M BTCUSDT (https://www.binance.com/en/futures/trading-rules/perpetual/leverage-margin):
# the brackets of GET /fapi/v1/leverageBracket (``notionalFloor``, ``maintMarginRatio``, ``cum``,
# ``initialLeverage``) as a captured response holds them (github.com/boolean404/heikin-ashi-
# trading-bot, json/fapiPrivate_get_leverage_bracket.py); not read from the venue's live page. Its
# first two brackets and the rates of all ten match Binance's announcement "Updates to Leverage
# and Margin Tiers of Binance Futures Contracts (2021-03-18)"; the floors above 250,000 differ
# from that announcement (a later update). Each ``cum`` is the continuation of the one below.
BINANCE_BTCUSDT_TIERS = (
    (0.0, 0.004, 0.0, 125.0),
    (50_000.0, 0.005, 50.0, 100.0),
    (250_000.0, 0.01, 1_300.0, 50.0),
    (3_000_000.0, 0.025, 46_300.0, 20.0),
    (20_000_000.0, 0.05, 546_300.0, 10.0),
    (40_000_000.0, 0.1, 2_546_300.0, 5.0),
    (100_000_000.0, 0.125, 5_046_300.0, 4.0),
    (120_000_000.0, 0.15, 8_046_300.0, 3.0),
    (200_000_000.0, 0.25, 28_046_300.0, 2.0),
    (300_000_000.0, 0.5, 103_046_300.0, 1.0),
)
# Gate USDT perpetual BTC_USDT: the table of Gate's help article "Risk Limit Explanation"
# (gate.com/help/futures/futures-logic/22162, read through a mirror; the older address
# gate.io/help/futures/futures/27724 no longer answers): tier, risk limit (the tier's cap), tiered
# MMR, max leverage. Gate computes the maintenance margin in gradient ("the next tier's MMR only
# on the part above the previous limit"), which is N*rate - amount with the amounts below
# (derived here; Gate's API names it ``deduction``).
GATE_BTCUSDT_TIERS = (
    (0.0, 0.004, 0.0, 125.0),
    (20_000.0, 0.0045, 10.0, 111.0),
    (50_000.0, 0.005, 35.0, 100.0),
    (100_000.0, 0.007, 235.0, 75.0),
    (200_000.0, 0.01, 835.0, 50.0),
    (1_000_000.0, 0.02, 10_835.0, 25.0),
    (2_000_000.0, 0.05, 70_835.0, 10.0),
    (3_000_000.0, 0.5, 1_420_835.0, 1.05),
)
MAINTENANCE_TIERS = {"binance": BINANCE_BTCUSDT_TIERS, "gate": GATE_BTCUSDT_TIERS}

Tier = tuple[float, float, float, float]  # floor, rate, amount, max leverage (inf: none)
_ALLOWED = (
    "a rate from 0 to 0.5 (0.005 is 0.5%), 'binance' or 'gate' (their BTC/USDT perpetual tiers), or "
    "tiers (notional_floor, rate[, amount[, max_leverage]]) sorted by floor from 0"
)


def maintenance_tiers(spec: Any) -> tuple[Tier, ...] | None:
    """The maintenance margin tiers ``spec`` names, checked; None for a single rate (a number).

    ``spec``: a number (one rate, the old approximation); ``"binance"`` or ``"gate"``; or rows
    ``(notional_floor, rate[, amount[, max_leverage]])`` or ccxt's ``fetch_leverage_tiers``
    dicts (``minNotional``, ``maintenanceMarginRate``, ``maxLeverage``, the amount from
    ``info["cum"]`` or ``info["deduction"]``). A missing amount is derived so that the
    maintenance margin continues from one tier into the next; a given one must do so.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return None
    return _tiers(_hashable(spec))


def describe_maintenance(spec: Any) -> float | str | list[list[float | None]]:
    """``maintenance_margin`` as JSON (what a listing stores): a rate, a venue's name, or rows."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    if isinstance(spec, str):
        return spec.strip().lower()
    return [
        [floor, rate, amount, None if lev == float("inf") else lev]
        for floor, rate, amount, lev in cast("tuple[Tier, ...]", maintenance_tiers(spec))  # not a number: tiers
    ]


def _hashable(spec: Any) -> Any:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        info = spec.get("info") or {}
        amount = info.get("cum", info.get("deduction")) if isinstance(info, Mapping) else None
        return (spec.get("minNotional"), spec.get("maintenanceMarginRate"), amount, spec.get("maxLeverage"))
    if isinstance(spec, (list, tuple)) or hasattr(spec, "__iter__"):
        return tuple(
            _hashable(row) if not isinstance(row, (int, float, str)) or isinstance(row, bool) else row for row in spec
        )
    return spec


def _fail(message: str, spec: Any) -> ParameterError:
    return ParameterError(f"maintenance_margin: {message}", param="maintenance_margin", value=spec)


@functools.lru_cache(maxsize=64)
def _tiers(spec: Any) -> tuple[Tier, ...]:
    if isinstance(spec, str):
        table = MAINTENANCE_TIERS.get(spec.strip().lower())
        if table is None:
            raise _fail(f"{spec!r} is not allowed; expected {_ALLOWED}", spec)
        return table
    if not isinstance(spec, tuple) or not spec or not all(isinstance(row, tuple) for row in spec):
        raise _fail(f"{spec!r} is not allowed; expected {_ALLOWED}", spec)
    tiers: list[Tier] = []
    for number, row in enumerate(spec, 1):
        if not 2 <= len(row) <= 4:
            raise _fail(f"tier {number} {row!r} is not (notional_floor, rate[, amount[, max_leverage]])", spec)
        floor, rate, amount, most = (*row, None, None)[:4]
        for name, value in (("notional floor", floor), ("rate", rate), ("amount", amount), ("max leverage", most)):
            if value is None and name in ("amount", "max leverage"):
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not value >= 0 or value == float("inf"):
                raise _fail(
                    f"tier {number}'s {name} {row[('notional floor', 'rate', 'amount', 'max leverage').index(name)]!r} "
                    "is not allowed; expected a finite number >= 0",
                    spec,
                )
        floor, rate = float(floor), float(rate)
        most = float("inf") if most is None else float(most)
        if most < 1:
            raise _fail(f"tier {number}'s max leverage {most:g} is not allowed; expected a number >= 1", spec)
        if not tiers:
            if floor != 0:
                raise _fail(f"tier 1 starts at notional {floor:g}; expected tiers sorted by floor from 0", spec)
            low_rate = 0.0
            expected = 0.0
        else:
            below_floor, below_rate, below_amount, _ = tiers[-1]
            if floor <= below_floor:
                raise _fail(
                    f"tier {number}'s notional floor {floor:g} is not above tier {number - 1}'s "
                    f"{below_floor:g}; expected tiers sorted by floor from 0",
                    spec,
                )
            low_rate = below_rate
            expected = below_amount + floor * (rate - below_rate)
        if not low_rate <= rate < 1.0:
            after = f" (tier {number - 1}'s)" if number > 1 else ""
            raise _fail(
                f"tier {number}'s rate {rate:g} is not allowed; expected a number from {low_rate:g}{after} to below 1",
                spec,
            )
        amount = expected if amount is None else float(amount)
        if abs(amount - expected) > 1e-6 * max(1.0, expected):
            raise _fail(
                f"tier {number}'s maintenance amount {amount:g} does not continue tier {number - 1}: "
                f"expected {expected:g} (its amount + floor x the rise of the rate)",
                spec,
            )
        tiers.append((floor, rate, amount, most))
    return tuple(tiers)


def tier_checks(tiers: tuple[Tier, ...], leverage: float, reach: float, spec: Any) -> None:
    """Refuse a leverage above the maximum of a tier the run's positions can reach (up to the
    notional ``reach``: the initial cash times the leverage, within max_position_size), or a
    tier there whose rate is at or above 1/leverage (liquidated at the entry)."""
    for number, (floor, rate, _, most) in enumerate(tiers, 1):
        if floor > 0 and floor >= reach:
            break
        upto = f"{tiers[number][0]:,.0f}" if number < len(tiers) else "any"
        span = f"notional {floor:,.0f} to {upto}"
        if leverage > most:
            raise ParameterError(
                f"leverage: {leverage:g} is above tier {number}'s maximum of {most:g} ({span}; this "
                f"run's positions can reach {reach:,.0f}: init_cash x leverage within "
                "max_position_size); lower the leverage or max_position_size",
                param="leverage",
                value=leverage,
            )
        if rate * leverage >= 1.0:
            raise _fail(
                f"tier {number}'s rate {rate:g} ({span}) is not allowed with leverage {leverage:g}; "
                f"expected a number from 0 to below 1/leverage = {1.0 / leverage:g}",
                spec,
            )
