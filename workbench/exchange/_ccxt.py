"""The interface over ccxt's unified API, for Binance and Gate (spot and USDT perpetuals).

What differs between venues is kept in ``_VENUES``: which markets ccxt loads, how a client
order id is sent (Binance ``newClientOrderId`` via ccxt's ``clientOrderId``; Gate ``text``,
which must start with "t-"), and where stops rest when the venue keeps them apart from its
orders (``_Stops``: Binance USDⓈ-M algo orders, Gate price-triggered orders), reached through
ccxt's ``{"trigger": True}`` and known here by a prefixed id. The client is built by the vault's
``client()``, so ccxt's debug log masks the keys; ccxt errors become workbench errors
whose messages have the keys scrubbed out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import ccxt
import pandas as pd

from workbench.errors import (
    AuthenticationFailed,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
)
from workbench.exchange._capabilities import capability
from workbench.exchange._types import MARKET_TYPES, Balance, Exchange, Fill, FundingPayment, Market, Order, Position
from workbench.vault import ExchangeKeys, Secret

# ccxt messages that mean "this client order id was used before" (Binance spot, USDⓈ-M, Gate)
_DUPLICATE_MARKERS = ("Duplicate order sent", "-4116", "REPEATED_CREATION")
# ccxt maps Binance futures codes by host name; these messages mean "not enough margin" anywhere
_INSUFFICIENT_MARKERS = ("Margin is insufficient",)
_STOP_LIMIT_SLACK = Decimal("0.005")
# a venue's "wait this long" (a 429's or 418's Retry-After), by venue, market type and address:
# requests before it runs out earn an IP ban (Binance ``rest-api.md``, LIMITS: "Repeatedly
# violating rate limits and/or failing to back off after receiving 429s will result in an
# automated IP ban (HTTP status 418)"), so every client of this process waits it out
_QUIET_UNTIL: dict[tuple[str, str, str], float] = {}
# the longest wait a request sits out before calling; a longer one fails at once (RateLimited)
_QUIET_WAIT_MAX = 10.0
_STATUSES: dict[str | None, str] = {
    "open": "open",
    "closed": "closed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}


@dataclass(frozen=True)
class _Stops:
    """Stops a venue keeps apart from its orders on one market type (ccxt reaches them with
    ``{"trigger": True}``): our id of one is ``prefix`` and the venue's id of it until it
    triggers; then it is the order it placed, which its fills carry."""

    prefix: str
    id_field: str  # the raw field holding the venue's id of the stop
    placed_field: str  # the raw field naming the order it placed when it triggered (empty or 0 before)
    by_client_id: bool  # whether the venue finds a stop by our client id; else the open ones are listed


@dataclass(frozen=True)
class _Venue:
    options: Mapping[str, Mapping[str, Any]]  # ccxt options per market type
    config: Mapping[str, Any]  # ccxt constructor settings for every market type
    client_id_param: str
    # the longest time span one history query may cover, by market type: Binance spot myTrades
    # and allOrders 24 h (rest-api.md), USDⓈ-M userTrades and allOrders 7 days; Gate spot
    # my_trades 30 days (docs/SpotApi.md, list_my_trades; futures taken as the same)
    history_span: Mapping[str, timedelta]
    client_id_prefix: str = ""
    # the field of a swap balance's raw asset entry holding the unrealised PnL that ccxt's
    # ``total`` includes: Binance USDⓈ-M reports ``marginBalance`` (wallet plus unrealised
    # PnL, "Account Information V3") and ccxt takes it as the total; Gate's futures ``total``
    # is "position_margin + order_margin + available", without it (``docs/FuturesAccount.md``)
    swap_total_pnl_field: str | None = None
    # isolated margin is set apart from leverage (Binance "Change Margin Type"); on Gate a
    # leverage above 0 is isolated margin by itself
    sets_margin_mode: bool = False
    # how the client order id of an order the venue's liquidation engine placed begins
    liquidation_ids: tuple[str, ...] = ()
    stops: Mapping[str, _Stops] = field(default_factory=dict)  # by market type


_VENUES = {
    "binance": _Venue(
        options={
            "spot": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
            "swap": {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
        },
        client_id_param="clientOrderId",
        history_span={"spot": timedelta(hours=24), "swap": timedelta(days=7)},
        config={"options": {"fetchMargins": False, "fetchCurrencies": False}},
        swap_total_pnl_field="unrealizedProfit",
        sets_margin_mode=True,
        # USDⓈ-M "User Data Streams", Event Order Update: the client order id of a liquidation
        # order starts with "autoclose-", of an auto-deleveraging one "adl_autoclose", of a
        # delisting settlement "settlement_autoclose-"
        liquidation_ids=("autoclose-", "adl_autoclose", "settlement_autoclose-"),
        # USDⓈ-M conditional orders are algo orders, queried by algoId or clientAlgoId;
        # actualOrderId names the order one placed (derivatives docs "Query Algo Order")
        stops={"swap": _Stops("algo-", "algoId", "actualOrderId", by_client_id=True)},
    ),
    "gate": _Venue(
        options={
            "spot": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
            "swap": {
                "defaultType": "swap",
                "fetchMarkets": {"types": ["swap"]},
                "swap": {"fetchMarkets": {"settlementCurrencies": ["usdt"]}},
            },
        },
        client_id_param="text",
        history_span={"spot": timedelta(days=30), "swap": timedelta(days=30)},
        client_id_prefix="t-",
        # the reserved ``text`` of orders Gate creates itself (docs/FuturesApi.md, FuturesOrder.text)
        liquidation_ids=("liquidation", "pm_liquidate", "auto_deleveraging"),
        # classic (non-unified) accounts; currencies are not needed to trade. A spot price
        # order lapses after trigger.expiration seconds, which Gate requires (SpotPriceTrigger.md;
        # ccxt sends options.createOrder.expiration, 1 day unless told): the longest Gate
        # is known to take, 30 days, so a stop left by an ended session rests that long
        config={
            "options": {"unifiedAccount": False, "createOrder": {"expiration": 30 * 86_400}},
            "has": {"fetchCurrencies": False},
        },
        # price-triggered orders are found by the id Gate returned only ("ID returned when order
        # is successfully created", SpotApi.md get_spot_price_triggered_order); the order one
        # placed is its fired_order_id (SpotPriceTriggeredOrder.md) or trade_id (futures,
        # FuturesPriceTriggeredOrder.md)
        stops={
            "spot": _Stops("price-", "id", "fired_order_id", by_client_id=False),
            "swap": _Stops("price-", "id", "trade_id", by_client_id=False),
        },
    ),
}

VENUES = tuple(_VENUES)


def _reveal(value: Any) -> str:
    return value.reveal() if hasattr(value, "reveal") else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time(ms: Any) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


class CcxtExchange(Exchange):
    """A ccxt client for one account and market type. ``urls`` replaces ccxt's ``urls["api"]``
    (e.g. a loopback server); ``config`` adds ccxt constructor settings (``timeout`` in ms,
    ``enableRateLimit``...); ``clock`` gives seconds since 1970 (which candles are closed).

    Without a ``clock`` the time is the venue's: asked once (``fetch_time``) the first time it
    is needed, so a local clock that runs ahead does not take the forming candle for a closed
    one, and signed requests carry the venue's time too (Binance refuses a timestamp 1 s ahead
    of its own or older than ``recvWindow``: ``rest-api.md``, Timing security)."""

    def __init__(
        self,
        name: str,
        *,
        api_key: Any = None,
        secret: Any = None,
        password: Any = None,
        market_type: str = "spot",
        urls: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if name not in _VENUES:
            raise ExchangeError(f"exchange {name!r} is not supported; use one of {', '.join(VENUES)}")
        if market_type not in MARKET_TYPES:
            raise ExchangeError(f"{name}: market_type {market_type!r}; use one of {MARKET_TYPES}")
        self.name, self.market_type, self._fixed_clock = name, market_type, clock
        self._offset: float | None = None  # the venue's time minus this machine's, in seconds
        venue = self._venue = _VENUES[name]
        settings = {**(config or {})}
        options = {**venue.config.get("options", {}), **venue.options[market_type], **settings.pop("options", {})}
        settings.update({key: value for key, value in venue.config.items() if key != "options"})
        settings["options"] = options
        if urls is not None:
            settings["urls"] = {"api": dict(urls)}
        if api_key is not None or secret is not None:
            from workbench.vault._exchange import client

            keys = ExchangeKeys(
                None,
                name,
                Secret(_reveal(api_key or "")),
                Secret(_reveal(secret or "")),
                Secret(_reveal(password)) if password else None,
            )
            self._redactions = keys.redactions()
            self._client = client(keys, settings)
        else:  # market data only
            self._redactions = []
            self._client = getattr(ccxt, name)(settings)
        self._markets: dict[str, Market] | None = None
        self._quiet_key = (name, market_type, repr(sorted((urls or {}).items())))

    # a read-only property over Exchange's class attribute, which mypy reads as writable
    @property
    def order_types(self) -> tuple[str, ...]:  # type: ignore[override]
        """Market and limit everywhere; "stop" where the venue rests stops natively (CAPABILITIES)."""
        return capability(self.name, self.market_type).order_types

    # -- markets ------------------------------------------------------------------------
    def markets(self, reload: bool = False) -> dict[str, Market]:
        if self._markets is None or reload:
            with self._calling("load_markets"):
                loaded = self._client.load_markets(reload=reload)
            self._markets = {
                symbol: self._market(m)
                for symbol, m in loaded.items()
                if m.get("type") == self.market_type and (self.market_type == "spot" or m.get("linear"))
            }
        return self._markets

    @staticmethod
    def _market(m: Mapping[str, Any]) -> Market:
        size = _dec(m.get("contractSize")) or Decimal(1)
        limits, precision = m.get("limits") or {}, m.get("precision") or {}
        min_amount = _dec((limits.get("amount") or {}).get("min"))
        return Market(
            symbol=m["symbol"],
            id=m["id"],
            type=m["type"],
            base=m["base"],
            quote=m["quote"],
            settle=m.get("settle"),
            contract_size=size,
            amount_step=cast(Decimal, _dec(precision.get("amount"))) * size,
            price_step=cast(Decimal, _dec(precision.get("price"))),
            min_amount=None if min_amount is None else min_amount * size,
            min_cost=_dec((limits.get("cost") or {}).get("min")),
            max_leverage=_dec((limits.get("leverage") or {}).get("max")),
            maker_fee=_dec(m.get("maker")),
            taker_fee=_dec(m.get("taker")),
            active=m.get("active") is not False,
        )

    def _round_amount(self, market: Market, amount: Decimal) -> Decimal:
        try:
            contracts = self._client.amount_to_precision(market.symbol, str(amount / market.contract_size))
        except ccxt.InvalidOrder:  # below one step: ccxt refuses; our check says why
            return Decimal(0)
        return Decimal(contracts) * market.contract_size

    def _round_price(self, market: Market, price: Decimal) -> Decimal:
        return Decimal(self._client.price_to_precision(market.symbol, str(price)))

    # -- reading ------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def _clock(self) -> float:
        """Seconds since 1970: the given clock, else the venue's."""
        if self._fixed_clock is not None:
            return self._fixed_clock()
        if self._offset is None:
            sent = time.time()
            with self._calling("fetch_time"):
                server_ms = self._client.fetch_time()
            received = time.time()
            self._offset = server_ms / 1000 - (sent + received) / 2
            # ccxt signs with milliseconds() - timeDifference
            self._client.options["timeDifference"] = int(received * 1000) - server_ms
        return time.time() + self._offset

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1h", since: datetime | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        from workbench.data import validate_candles

        market = self.market(symbol)
        since_ms = None if since is None else int(since.timestamp() * 1000)
        with self._calling("fetch_ohlcv"):
            # one more than asked for: the newest may be the forming candle, which is not closed
            rows = self._client.fetch_ohlcv(market.symbol, timeframe, since_ms, limit and limit + 1)
        step_ms = self._client.parse_timeframe(timeframe) * 1000
        now_ms = self._clock() * 1000
        rows = [row[:6] for row in rows if row[0] + step_ms <= now_ms][-limit if limit else None :]
        frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"], dtype="float64")
        frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="ms", utc=True)
        frame = frame.set_index("time")
        frame.attrs.update(timeframe=timeframe, symbol=symbol, source=f"{self.name} {self.market_type}")
        return validate_candles(frame, timeframe=timeframe) if len(frame) else frame

    def fetch_price(self, symbol: str, timeframe: str = "1m") -> Decimal:
        market = self.market(symbol)
        step_ms, now_ms = self._client.parse_timeframe(timeframe) * 1000, int(self._clock() * 1000)
        with self._calling("fetch_ohlcv"):  # the last closed candle and the forming one
            rows = self._client.fetch_ohlcv(market.symbol, timeframe, now_ms // step_ms * step_ms - step_ms, 2)
        forming = [row for row in rows if row[0] <= now_ms < row[0] + step_ms]
        if forming:
            return Decimal(str(forming[0][1]))
        closed = [row for row in rows if row[0] + step_ms <= now_ms]
        if not closed:
            raise ExchangeError(f"{self.name} {self.market_type} fetch_ohlcv: no recent {timeframe} candle of {symbol}")
        return Decimal(str(closed[-1][4]))  # no trade yet in the forming candle: the last close

    def fetch_balance(self) -> dict[str, Balance]:
        with self._calling("fetch_balance"):
            raw = self._client.fetch_balance({"type": self.market_type})
        result = {}
        pnl = self._unrealized(raw)
        for currency, account in raw.items():
            if (
                isinstance(account, dict)
                and {"free", "used", "total"} <= account.keys()
                and currency not in ("free", "used", "total")
            ):
                free, used, total = (_dec(account.get(k)) or Decimal(0) for k in ("free", "used", "total"))
                result[currency] = Balance(currency, free, used, total - pnl.get(currency, Decimal(0)))
        return result

    def _unrealized(self, raw: Mapping[str, Any]) -> dict[str, Decimal]:
        """The unrealised PnL per currency that the venue's swap balance total includes (none
        where the total leaves it out), so every venue's total is the wallet balance."""
        field = self._venue.swap_total_pnl_field
        if self.market_type != "swap" or field is None or not isinstance(raw.get("info"), Mapping):
            return {}
        return {
            self._client.safe_currency_code(entry.get("asset")): _dec(entry.get(field)) or Decimal(0)
            for entry in raw["info"].get("assets", [])
            if isinstance(entry, Mapping)
        }

    def fetch_position(self, symbol: str) -> Position:
        market = self.market(symbol)
        if market.type == "spot":
            held = self.fetch_balance().get(market.base)
            return Position(symbol, held.total if held else Decimal(0))
        with self._calling("fetch_positions"):
            positions = self._client.fetch_positions([symbol])
        for p in positions:
            contracts = _dec(p.get("contracts")) or Decimal(0)
            if p.get("symbol") == symbol and contracts:
                sign = -1 if p.get("side") == "short" else 1
                return Position(
                    symbol,
                    sign * contracts * market.contract_size,
                    _dec(p.get("entryPrice")),
                    _dec(p.get("leverage")),
                    _dec(p.get("unrealizedPnl")),
                    _dec(p.get("initialMargin") if p.get("initialMargin") is not None else p.get("collateral")),
                    _dec(p.get("liquidationPrice")),
                )
        return Position(symbol, Decimal(0))

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        """The open orders, with the stops a venue keeps apart from them (``_Stops``): a resting
        stop shows among the open orders on every venue."""
        market = self.market(symbol)
        with self._calling("fetch_open_orders"):
            raws = self._client.fetch_open_orders(symbol)
            if market.type in self._venue.stops:
                raws = [*raws, *self._client.fetch_open_orders(symbol, None, None, {"trigger": True})]
        return [self._order(o, market) for o in raws]

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> Order | None:
        market = self.market(symbol)
        params = {"clientOrderId": self._venue.client_id_prefix + client_order_id}
        try:
            with self._calling("fetch_order"):
                return self._order(self._client.fetch_order(None, symbol, params), market)
        except OrderNotFound:
            stops = self._venue.stops.get(market.type)
            return None if stops is None else self._stop_by_client_id(market, stops, client_order_id)

    def _stop_by_client_id(self, market: Market, stops: _Stops, client_order_id: str) -> Order | None:
        """A stop kept apart from the orders, by our client id: asked for by it where the venue
        can (Binance ``clientAlgoId``), else found among the open stops (a Gate price order is
        found by Gate's id only; one that finished is in ``fetch_orders``)."""
        if stops.by_client_id:
            params = {"clientOrderId": self._venue.client_id_prefix + client_order_id, "trigger": True}
            try:
                with self._calling("fetch_order"):
                    raw = self._client.fetch_order(None, market.symbol, params)
            except OrderNotFound:
                return None
        else:
            with self._calling("fetch_open_orders"):
                waiting = self._client.fetch_open_orders(market.symbol, None, None, {"trigger": True})
            raw = next((o for o in waiting if self._client_id(o.get("clientOrderId")) == client_order_id), None)
            if raw is None:
                return None
        return self._triggered(market, stops, raw, client_order_id)

    def _triggered(self, market: Market, stops: _Stops, raw: Mapping[str, Any], client_order_id: str | None) -> Order:
        """A stop as ccxt gave it: itself while it waits, else the order it placed (whose fills
        carry that order's id), under our client id; one the venue does not show yet is known
        by that id, still open, so its fills are the stop's."""
        stop = self._order(raw, market)
        placed = str((raw.get("info") or {}).get(stops.placed_field) or "0")
        if placed == "0":
            return stop
        try:
            with self._calling("fetch_order"):
                actual = self._order(self._client.fetch_order(placed, market.symbol), market)
        except OrderNotFound:
            return replace(stop, id=placed, client_order_id=client_order_id, status="open")
        return replace(actual, client_order_id=client_order_id, type="stop", price=stop.price)

    def _waiting_stop(self, market: Market, order_id: str) -> str | None:
        """The venue's id of the stop our ``order_id`` names (see ``_Stops``); None for an order."""
        stops = self._venue.stops.get(market.type)
        return order_id[len(stops.prefix) :] if stops is not None and order_id.startswith(stops.prefix) else None

    def fetch_order(self, symbol: str, order_id: str) -> Order | None:
        market = self.market(symbol)
        stop_id = self._waiting_stop(market, order_id)
        try:
            if stop_id is not None:
                with self._calling("fetch_order"):
                    raw = self._client.fetch_order(stop_id, symbol, {"trigger": True})
                stops = self._venue.stops[market.type]
                return self._triggered(market, stops, raw, self._order(raw, market).client_order_id)
            with self._calling("fetch_order"):
                return self._order(self._client.fetch_order(order_id, symbol), market)
        except OrderNotFound:
            return None

    def fetch_orders(self, symbol: str, since: datetime, until: datetime | None = None) -> list[Order]:
        market = self.market(symbol)
        found: dict[str, Order] = {}
        if not self._client.has.get("fetchOrders"):  # Gate: the open orders, then the finished ones by window
            found.update((o.id, o) for o in self.fetch_open_orders(symbol))
        fetch = self._client.fetch_orders if self._client.has.get("fetchOrders") else self._client.fetch_closed_orders
        for page in self._history(fetch, "fetch_orders", symbol, since, until):
            found.update((o.id, o) for o in (self._order(raw, market) for raw in page))
        stops = self._venue.stops.get(market.type)
        if stops is not None and not stops.by_client_id:  # a stop that finished is found nowhere else
            found.update((o.id, o) for o in self._finished_stops(market, stops, since, until))
        return sorted(found.values(), key=lambda o: (o.timestamp or since, o.id))

    _STOP_PAGE = 100  # Gate's page of price orders

    def _finished_stops(self, market: Market, stops: _Stops, since: datetime, until: datetime | None) -> list[Order]:
        """The stops made from ``since`` to ``until`` that finished (triggered: the order each
        placed, ``_triggered``; cancelled, failed, lapsed). Gate lists finished price orders
        newest first by ``limit`` and ``offset``, for no time window (SpotApi.md
        list_spot_price_triggered_orders, FuturesApi.md list_price_triggered_orders), so pages
        are read until one reaches back before ``since`` (whole seconds, as Gate stamps them)."""
        start = math.floor(since.timestamp()) * 1000
        end = math.inf if until is None else until.timestamp() * 1000
        finished: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            with self._calling("fetch_orders"):
                page = self._client.fetch_closed_orders(
                    market.symbol, None, self._STOP_PAGE, {"trigger": True, "offset": offset}
                )
            finished += [raw for raw in page if start <= (raw.get("timestamp") or 0) <= end]
            if len(page) < self._STOP_PAGE or min(raw.get("timestamp") or 0 for raw in page) < start:
                break
            offset += len(page)
        return [self._triggered(market, stops, raw, self._client_id(raw.get("clientOrderId"))) for raw in finished]

    def fetch_my_trades(self, symbol: str, since: datetime | None = None, until: datetime | None = None) -> list[Fill]:
        market = self.market(symbol)
        since = since or datetime.now(UTC) - self._venue.history_span[self.market_type]
        fills: dict[str, Fill] = {}
        for page in self._history(self._client.fetch_my_trades, "fetch_my_trades", symbol, since, until):
            fills.update((f.id, f) for f in (self._fill(t, market) for t in page))
        # Gate's "from" is whole seconds
        return sorted(
            (f for f in fills.values() if f.timestamp >= since and (until is None or f.timestamp < until)),
            key=lambda f: (f.timestamp, f.id),
        )

    def fetch_funding_payments(
        self, symbol: str, since: datetime, until: datetime | None = None
    ) -> list[FundingPayment]:
        """Funding booked on the position (Binance USDⓈ-M income ``FUNDING_FEE``,
        ``GET /fapi/v1/income``; Gate ``GET /futures/usdt/account_book?type=fund``), through
        ccxt's ``fetch_funding_history``, in the same windows as the trade history."""
        market = self.market(symbol)
        if market.type != "swap":
            return []
        payments: dict[str, FundingPayment] = {}
        for page in self._history(self._funding_page, "fetch_funding_history", symbol, since, until):
            payments.update((p.id, p) for p in (self._funding(raw, market) for raw in page))
        return sorted(
            (p for p in payments.values() if p.timestamp >= since and (until is None or p.timestamp < until)),
            key=lambda p: (p.timestamp, p.id),
        )

    def _funding_page(self, symbol: str, since: int, limit: int, params: dict[str, Any]) -> list:
        if self.name == "gate":  # Gate bounds the account book by "to" (seconds); ccxt passes no "until"
            params = {"to": math.ceil(params["until"] / 1000)}
        return self._client.fetch_funding_history(symbol, since, limit, params)

    def _funding(self, raw: Mapping[str, Any], market: Market) -> FundingPayment:
        info = raw.get("info") or {}
        stamp = raw.get("timestamp")
        return FundingPayment(
            id=str(raw.get("id") or info.get("id") or f"{market.id}@{stamp}"),
            symbol=market.symbol,
            amount=_dec(raw.get("amount")) or Decimal(0),
            currency=raw.get("code") or market.settle,
            timestamp=cast(datetime, _time(stamp)),
        )

    _PAGE = 500

    def _history(
        self, fetch: Callable[..., list], operation: str, symbol: str, since: datetime, until: datetime | None
    ) -> Iterator[list]:
        """Pages of a history query from ``since`` to ``until`` (default now), in windows no
        longer than the venue allows, a full page continuing from its newest record.

        Windows run on whole seconds and share their boundary second (callers key records by
        id): Gate takes ``from`` and ``to`` in whole seconds while ccxt drops what is older than
        the millisecond ``since`` it was given, so a record in the second a window ends would
        otherwise fall between two windows."""
        span_ms = int(self._venue.history_span[self.market_type].total_seconds() * 1000)
        start = math.floor(since.timestamp()) * 1000
        if until is None:  # now; a time a tick was told may lag the venue's records
            end = math.ceil(max(time.time(), self._clock())) * 1000
        else:
            end = math.ceil(until.timestamp()) * 1000
        while start <= end:
            stop = min(start + span_ms - 1000, end)
            with self._calling(operation):
                page = fetch(symbol, start, self._PAGE, {"until": stop})
            yield page
            newest = max((row.get("timestamp") or start for row in page), default=start)
            if len(page) >= self._PAGE and newest > start:
                start = newest
            elif stop >= end:
                return
            else:
                start = stop

    # -- trading ------------------------------------------------------------------------
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
        params: dict[str, Any] = {self._venue.client_id_param: self._venue.client_id_prefix + client_order_id}
        if reduce_only:
            if market.type != "swap":
                raise InvalidOrder(f"{self.name} {market.symbol}: reduce_only is for swaps")
            params["reduceOnly"] = True
        if self.name == "gate" and market.type == "spot" and type == "market" and side == "buy":
            if price is None:  # Gate sizes spot market buys in quote currency
                raise InvalidOrder(
                    f"gate {market.symbol}: a spot market buy needs a reference price "
                    "(Gate spends amount x price of the quote currency)"
                )
            params["cost"] = str(amount * price)
        contracts = str(amount / market.contract_size)
        limit = str(price) if type == "limit" else None
        stop = type == "stop"
        if stop:  # ccxt's unified stop-loss: Binance STOP_LOSS_LIMIT (spot), STOP_MARKET algo (USDⓈ-M);
            # Gate a price order that places a limit order (spot) or a market one ("0", tif ioc, futures)
            params["stopLossPrice"] = str(price)
            type, limit = (
                ("market", None)
                if market.type == "swap"
                else ("limit", str(self._stop_limit(market, side, cast(Decimal, price))))
            )
        with self._calling("create_order"):
            raw = self._client.create_order(market.symbol, type, side, contracts, limit, params)
        order = self._order(raw, market)
        stops = self._venue.stops.get(market.type)
        if stop and stops is not None and order.type != "stop":
            # Gate answers a price order with its id alone (TriggerOrderResponse): it rests as sent
            order = Order(
                stops.prefix + order.id,
                client_order_id,
                market.symbol,
                side,
                "stop",
                amount,
                price,
                Decimal(0),
                None,
                "open",
                None,
                reduce_only,
            )
        return order

    def _stop_limit(self, market: Market, side: str, trigger: Decimal) -> Decimal:
        """A spot stop's limit: ``_STOP_LIMIT_SLACK`` beyond the trigger, so a falling market
        still fills it (Binance spot has no stop-market order: ``STOP_LOSS`` is refused for
        market-type stops by ccxt, and ``STOP_LOSS_LIMIT`` needs a price; a Gate spot price
        order places a limit order: "Only limit orders are supported as the triggered order
        type", Gate API v4, "Create price-triggered order")."""
        slack = 1 - _STOP_LIMIT_SLACK if side == "sell" else 1 + _STOP_LIMIT_SLACK
        return self._round_price(market, trigger * slack)

    def cancel_order(self, symbol: str, order_id: str) -> Order:
        market = self.market(symbol)
        stop_id = self._waiting_stop(market, order_id)
        if stop_id is not None:
            with self._calling("cancel_order"):
                self._client.cancel_order(stop_id, symbol, {"trigger": True})
                raw = self._client.fetch_order(stop_id, symbol, {"trigger": True})
            return self._order(raw, market)
        with self._calling("cancel_order"):
            return self._order(self._client.cancel_order(order_id, symbol), market)

    def is_liquidation(self, fill: Fill) -> bool:
        marks = self._venue.liquidation_ids
        if self.market_type != "swap" or not marks:
            return False
        client_id = fill.client_order_id
        if client_id is None:  # a trade list that does not carry it (Binance USDⓈ-M userTrades): the order does
            with self._calling("fetch_order"):
                client_id = self._client.fetch_order(fill.order_id, fill.symbol).get("clientOrderId")
        return bool(client_id) and str(client_id).startswith(marks)

    def set_leverage(self, symbol: str, leverage: int) -> None:
        market = self.market(symbol)
        if market.type != "swap":
            raise InvalidOrder(f"{self.name} {symbol}: leverage is set on swaps only, not on {market.type}")
        if market.max_leverage is not None and leverage > market.max_leverage:
            raise InvalidOrder(
                f"{self.name} {symbol}: leverage {leverage} is above the market's maximum {market.max_leverage}"
            )
        if self._venue.sets_margin_mode:
            with self._calling("set_margin_mode"):
                try:
                    self._client.set_margin_mode("isolated", symbol)
                except ccxt.MarginModeAlreadySet:  # -4046 "No need to change margin type."
                    pass
        with self._calling("set_leverage"):
            self._client.set_leverage(int(leverage), symbol)

    def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None:
            session.close()

    # -- conversions --------------------------------------------------------------------
    def _client_id(self, raw: Any) -> str | None:
        prefix = self._venue.client_id_prefix
        if raw and prefix and str(raw).startswith(prefix):
            return str(raw)[len(prefix) :]
        return raw or None

    def _order(self, o: Mapping[str, Any], market: Market) -> Order:
        size = market.contract_size
        amount = _dec(o.get("amount")) or Decimal(0)
        filled = _dec(o.get("filled")) or Decimal(0)
        info = o.get("info") or {}
        stop = o.get("triggerPrice") is not None
        stops = self._venue.stops.get(market.type)
        waiting = stop and stops is not None and info.get(stops.id_field) is not None
        return Order(
            id=f"{cast(_Stops, stops).prefix}{info[cast(_Stops, stops).id_field]}" if waiting else str(o["id"]),
            client_order_id=self._client_id(o.get("clientOrderId")),
            symbol=market.symbol,
            side=cast(str, o.get("side")),
            type="stop" if stop else cast(str, o.get("type")),
            amount=amount * size,
            price=_dec(o.get("triggerPrice")) if stop else _dec(o.get("price")) if o.get("type") == "limit" else None,
            filled=filled * size,
            average=_dec(o.get("average")) if filled else None,
            status=_STATUSES.get(o.get("status"), "open"),
            timestamp=_time(o.get("timestamp")),
            reduce_only=bool(o.get("reduceOnly")),
        )

    def _fill(self, t: Mapping[str, Any], market: Market) -> Fill:
        fee = t.get("fee") or {}
        taker = t.get("takerOrMaker")
        info = t.get("info") or {}
        return Fill(
            id=str(t["id"]),
            order_id=str(t.get("order")),
            client_order_id=self._client_id(info.get("text")),
            symbol=market.symbol,
            side=cast(str, t.get("side")),
            amount=(_dec(t.get("amount")) or Decimal(0)) * market.contract_size,
            price=cast(Decimal, _dec(t.get("price"))),
            fee=_dec(fee.get("cost")) or Decimal(0),
            fee_currency=fee.get("currency"),
            timestamp=cast(datetime, _time(t.get("timestamp"))),
            taker=None if taker is None else taker == "taker",
        )

    # -- errors -------------------------------------------------------------------------
    @contextmanager
    def _calling(self, operation: str) -> Iterator[None]:
        """Turn ccxt's exceptions into ours, saying what failed, without the keys; before the
        first signed request, learn the venue's time (``_clock``). A rate limit the venue asked
        for is waited out first (``_QUIET_UNTIL``)."""
        self._wait_out_rate_limit(operation)
        if self._offset is None and self._fixed_clock is None and self._client.apiKey and operation != "fetch_time":
            self._clock()
        try:
            yield
        except ccxt.BaseError as exc:
            error = self._translate(operation, exc)
            if isinstance(error, RateLimited) and error.retry_after:
                _QUIET_UNTIL[self._quiet_key] = max(
                    _QUIET_UNTIL.get(self._quiet_key, 0.0), time.monotonic() + error.retry_after
                )
            raise error from None

    def _wait_out_rate_limit(self, operation: str) -> None:
        remaining = _QUIET_UNTIL.get(self._quiet_key, 0.0) - time.monotonic()
        if remaining > _QUIET_WAIT_MAX:
            raise RateLimited(
                f"{self.name} {self.market_type} {operation}: not sent: the exchange asked for no "
                f"requests for another {remaining:.0f} s",
                retry_after=remaining,
            )
        if remaining > 0:
            time.sleep(remaining)

    def _translate(self, operation: str, exc: ccxt.BaseError) -> ExchangeError:
        detail = f"{type(exc).__name__}: {exc}"
        for plain, shown in self._redactions:
            detail = detail.replace(plain, shown)
        where = f"{self.name} {self.market_type} {operation}"
        if isinstance(exc, ccxt.AuthenticationError):
            return AuthenticationFailed(
                f"{where}: authentication failed (API key, secret or permissions rejected): {detail}"
            )
        if isinstance(exc, ccxt.InsufficientFunds) or any(marker in str(exc) for marker in _INSUFFICIENT_MARKERS):
            return InsufficientFunds(f"{where}: insufficient funds for the order: {detail}")
        if isinstance(exc, ccxt.OrderNotFound):
            return OrderNotFound(f"{where}: no such order: {detail}")
        if isinstance(exc, ccxt.ExchangeError) and any(marker in str(exc) for marker in _DUPLICATE_MARKERS):
            return DuplicateOrder(f"{where}: the client order id was used before: {detail}")
        if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.BadSymbol)):
            return InvalidOrder(f"{where}: the exchange rejected the order: {detail}")
        if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            retry_after = _retry_after(getattr(self._client, "last_response_headers", None))
            wait = f"retry after {retry_after:g} s" if retry_after is not None else "no Retry-After given"
            return RateLimited(f"{where}: rate limited ({wait}): {detail}", retry_after=retry_after)
        if isinstance(exc, ccxt.NetworkError) and not isinstance(exc, ccxt.InvalidNonce):
            kind = "timed out" if isinstance(exc, ccxt.RequestTimeout) else "unavailable"
            return ExchangeUnavailable(
                f"{where}: the exchange is {kind}; the outcome of the request is unknown: {detail}"
            )
        return ExchangeError(f"{where}: {detail}")


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare from exchanges; treat as unknown
        return None
