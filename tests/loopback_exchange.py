"""A stand-in for exchange REST APIs on 127.0.0.1, so tests run the real ccxt client classes.

No exchange is reachable from development machines, and mocking ccxt would skip the code
that matters (its request building, signing and response parsing). So the boundary is
moved to HTTP: ``LoopbackExchange`` is a small threaded HTTP server on an ephemeral
loopback port that routes ``(method, path)`` to handlers, records every request, and can
be told to fail. ``BinanceSpot`` adds Binance's spot market-data endpoints in Binance's own
formats; ``BinanceAccount`` its signed account endpoint. ``Binance`` and ``Gate`` are
trading venues (spot and USDT perpetuals) over one ``Book`` of balances, positions,
orders and trades, checking each venue's request signatures. Faults on demand: ``fail``
(any status, e.g. 5xx, or 429 with a Retry-After header), ``delay`` (slower than the
client's timeout), ``lose_response`` (the request is carried out, then the connection is
dropped or answered 5xx: "accepted but the response was lost"), ``Book.partial_next``.
``serve_binance_funding`` and ``serve_gate_funding`` add the venues' public funding-rate
history (SYNTHETIC rates from ``synthetic_funding`` unless given real ones), which
``funding_client`` reads through a real ``ccxt.binanceusdm`` or ``ccxt.gate``.

    with BinanceSpot({"BTC/USDT": candles}) as server:
        exchange = server.client()            # a real ccxt.binance talking to the server
        exchange.fetch_ohlcv("BTC/USDT", "1h")
        server.requests_to("/api/v3/klines")   # what ccxt actually sent
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pandas as pd


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""  # as sent, still percent-encoded (Gate signs the decoded string)
    path_params: dict[str, str] = field(default_factory=dict)  # from "{name}" route segments


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: a JSON-serialisable body, or text sent as is."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]

# a Reply body that makes the server close the connection without answering
DROP = object()


@dataclass
class _Fault:
    method: str | None
    path: str
    reply: Reply
    remaining: int | None  # None: until cleared
    after: int  # matching requests still let through before the fault starts
    delay: float = 0.0  # seconds to wait, then answer normally
    lose: bool = False  # run the handler, then answer ``reply`` (DROP: no answer) instead


class LoopbackExchange:
    """The venue-neutral part: routing, request log, fault injection, start/stop."""

    # A venue makes a candle for every interval, trades or not (Binance: "Kline always generate
    # even if there is no trade", binance/binance-public-data#153): with this on, the candles
    # after the newest one given run on to the one forming now, flat at its close with no volume.
    # Off for tests that serve a fixed history at the machine's time.
    candles_through_now = False

    def served_candles(self, symbol: str, now_s: float) -> pd.DataFrame:
        """``self.candles[symbol]`` as the venue serves it at ``now_s``."""
        frame = self.candles[symbol]
        if not self.candles_through_now or not len(frame):
            return frame
        from ccxt.base.exchange import Exchange

        step = pd.Timedelta(seconds=Exchange.parse_timeframe(frame.attrs["timeframe"]))
        opens = pd.date_range(frame.index[-1] + step, pd.Timestamp(now_s, unit="s", tz="UTC"), freq=step)
        if not len(opens):
            return frame
        last = float(frame["close"].iloc[-1])
        flat = pd.DataFrame({"open": last, "high": last, "low": last, "close": last, "volume": 0.0}, index=opens)
        served = pd.concat([frame, flat.rename_axis(frame.index.name)])
        served.attrs = dict(frame.attrs)
        return served

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []  # exceptions raised by handlers (answered with 500)
        self._routes: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, re.Pattern, Handler]] = []
        self._faults: list[_Fault] = []
        self._quiet_until = 0.0  # a 429's Retry-After: requests before it earn a ban (418)
        self.bans: list[float] = []  # when each 418 ban was given
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        """``path`` may hold ``{name}`` segments; their values arrive in ``request.path_params``."""
        if "{" in path:
            pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
            self._patterns.append((method.upper(), pattern, handler))
        else:
            self._routes[(method.upper(), path)] = handler

    def fail(
        self,
        path: str,
        status: int = 503,
        body: Any = "Service Unavailable",
        *,
        method: str | None = None,
        times: int | None = None,
        after: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer requests to ``path`` with ``status`` (and ``headers``, e.g. Retry-After): after
        letting ``after`` through, the next ``times`` ones (all, until cleared, when None)."""
        with self._lock:
            self._faults.append(
                _Fault(method and method.upper(), path, Reply(status, body, headers or {}), times, after)
            )

    def delay(self, path: str, seconds: float, *, method: str | None = None, times: int | None = 1) -> None:
        """Answer the next ``times`` requests to ``path`` only after ``seconds`` (a timeout)."""
        with self._lock:
            self._faults.append(_Fault(method and method.upper(), path, Reply(200, None), times, 0, delay=seconds))

    def lose_response(
        self,
        path: str,
        *,
        method: str | None = None,
        times: int | None = 1,
        status: int | None = None,
        body: Any = "Bad Gateway",
    ) -> None:
        """Carry out the next ``times`` requests to ``path``, then drop the connection without
        answering (``status=None``) or answer ``status`` and ``body`` instead of the result
        (e.g. Binance's 503 ``{"code": -1007, ...}``: "Send status unknown; execution status
        unknown", ``errors.md``)."""
        reply = Reply(status, body) if status else Reply(0, DROP)
        with self._lock:
            self._faults.append(_Fault(method and method.upper(), path, reply, times, 0, lose=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method.upper())]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the loopback exchange is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def point(self, exchange: Any) -> Any:
        """Send every REST URL of a ccxt ``exchange`` instance to this server, keeping the paths."""
        exchange.urls["api"] = self._rewrite(exchange.urls["api"])
        return exchange

    def _rewrite(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self._rewrite(item) for key, item in value.items()}
        if isinstance(value, str):
            return re.sub(r"^https?://[^/]+", self.url, value)
        return value

    def start(self) -> LoopbackExchange:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _HTTPHandler)
        server.daemon_threads = True
        server.exchange = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="loopback-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: later requests get 'connection refused', as from a down exchange."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def __enter__(self) -> LoopbackExchange:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    BAN_SECONDS = 120.0

    def handle(self, request: Request) -> Reply:
        """Answer ``request``: a scripted fault, else the route. A client that sends again before
        a 429's Retry-After ran out is banned: 418 with the ban's Retry-After (Binance
        ``rest-api.md``, LIMITS: "Repeatedly violating rate limits and/or failing to back off
        after receiving 429s will result in an automated IP ban (HTTP status 418)")."""
        with self._lock:
            self.requests.append(request)
            now = time.monotonic()
            if now < self._quiet_until:
                self._quiet_until = now + self.BAN_SECONDS
                self.bans.append(now)
                return Reply(
                    418,
                    {"code": -1003, "msg": "Way too many requests; IP banned."},
                    {"Retry-After": str(int(self.BAN_SECONDS))},
                )
            fault = next(
                (f for f in self._faults if f.path == request.path and f.method in (None, request.method)),
                None,
            )
            if fault is not None and fault.after > 0:
                fault.after -= 1
                fault = None
            elif fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        elif fault is not None and not fault.lose:
            if fault.reply.status == 429:
                with self._lock:
                    self._quiet_until = time.monotonic() + float(fault.reply.headers.get("Retry-After", 0))
            return fault.reply
        reply = self._dispatch(request)
        return fault.reply if fault is not None and fault.lose else reply

    def _dispatch(self, request: Request) -> Reply:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            for method, pattern, candidate in self._patterns:
                match = pattern.match(request.path)
                if method == request.method and match:
                    handler, request = candidate, replace(request, path_params=match.groupdict())
                    break
            else:
                return Reply(404, f"no route for {request.method} {request.path}")
        try:
            return handler(request)
        except Exception as err:  # a bug in a handler must show in the test, not hang it
            self.errors.append(err)
            return Reply(500, f"loopback handler failed: {err!r}")


class _HTTPHandler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=dict(self.headers.items()),
            body=self.rfile.read(length),
            raw_query=url.query,
        )
        reply = self.server.exchange.handle(request)  # type: ignore[attr-defined]
        if reply.body is DROP:
            self.close_connection = True
            return
        is_text = isinstance(reply.body, str)
        payload = reply.body.encode() if is_text else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/plain" if is_text else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except ConnectionError:  # the client gave up (its timeout): nothing to answer
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


class BinanceSpot(LoopbackExchange):
    """Binance spot market data in Binance's formats, from tidy candle frames.

    ``candles`` maps unified symbols ("BTC/USDT") to tidy frames (with ``attrs["timeframe"]``);
    klines are only served for that timeframe, and never for candles that open after
    ``clock()`` (seconds since 1970), as on the real exchange.
    """

    MAX_KLINES = 1000
    DEFAULT_KLINES = 500

    def __init__(
        self, candles: Mapping[str, pd.DataFrame] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.candles = dict(candles or {})
        self.clock = clock
        # a symbol's trading status (exchangeInfo ``status``): "TRADING", or "BREAK" when halted
        # or delisted; ccxt marks a market active only when TRADING
        self.symbol_status: dict[str, str] = {}
        self.route("GET", "/api/v3/ping", lambda request: Reply(200, {}))
        self.route("GET", "/api/v3/time", lambda request: Reply(200, {"serverTime": self._now_ms()}))
        self.route("GET", "/fapi/v1/time", lambda request: Reply(200, {"serverTime": self._now_ms()}))
        self.route("GET", "/api/v3/exchangeInfo", self._exchange_info)
        self.route("GET", "/api/v3/klines", self._klines)

    def client(self, **config: Any) -> Any:
        """A real ``ccxt.binance`` pointed at this server, loading spot markets only."""
        import ccxt

        options = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, **config.pop("options", {})}
        return self.point(ccxt.binance({"options": options, **config}))

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.replace("/", "")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @staticmethod
    def _error(status: int, code: int, message: str) -> Reply:
        return Reply(status, {"code": code, "msg": message})

    def _exchange_info(self, request: Request) -> Reply:
        return Reply(
            200,
            {
                "timezone": "UTC",
                "serverTime": self._now_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
                ],
                "exchangeFilters": [],
                "symbols": [self._symbol_info(symbol) for symbol in self.candles],
            },
        )

    def _symbol_info(self, symbol: str) -> dict:
        base, quote = symbol.split("/")
        return {
            "symbol": self.market_id(symbol),
            "status": self.symbol_status.get(symbol, "TRADING"),
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2", "avgPriceMins": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _klines(self, request: Request) -> Reply:
        """GET /api/v3/klines: startTime/endTime inclusive, oldest first, at most ``limit`` (<= 1000).

        With startTime the page starts there; otherwise it ends at endTime (or now).
        """
        query = request.query
        symbol = next((s for s in self.candles if self.market_id(s) == query.get("symbol")), None)
        if symbol is None:
            return self._error(400, -1121, "Invalid symbol.")
        frame = self.served_candles(symbol, self._now_ms() / 1000)
        if query.get("interval") != frame.attrs["timeframe"]:
            return self._error(400, -1120, "Invalid interval.")
        limit = int(query.get("limit", self.DEFAULT_KLINES))
        if not 1 <= limit <= self.MAX_KLINES:
            return self._error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        opens = frame.index.as_unit("ms").asi8
        visible = opens <= self._now_ms()
        if "startTime" in query:
            visible &= opens >= int(query["startTime"])
        if "endTime" in query:
            visible &= opens <= int(query["endTime"])
        from ccxt.base.exchange import Exchange

        page = frame[visible]
        page = page.head(limit) if "startTime" in query else page.tail(limit)
        step = Exchange.parse_timeframe(frame.attrs["timeframe"]) * 1000
        rows = []
        for opened, candle in zip(page.index.as_unit("ms").asi8, page.itertuples(index=False)):
            o, h, low, c, v = forming_values(candle, opened / 1000, step / 1000, self._now_ms() / 1000)
            quote_volume = v * c
            rows.append(
                [
                    int(opened),
                    f"{o:.8f}",
                    f"{h:.8f}",
                    f"{low:.8f}",
                    f"{c:.8f}",
                    f"{v:.8f}",
                    int(opened) + step - 1,
                    f"{quote_volume:.8f}",
                    100,
                    f"{v / 2:.8f}",
                    f"{quote_volume / 2:.8f}",
                    "0",
                ]
            )
        return Reply(200, rows)


class BinanceAccount(BinanceSpot):
    """``BinanceSpot`` plus the signed account endpoints ``fetch_balance`` needs, checked the
    way Binance checks them: the ``X-MBX-APIKEY`` header must name the key and ``signature``
    must be the HMAC-SHA256 (hex, keyed by the secret) of the rest of the query string;
    otherwise Binance's own error answers (-2015, -1022, -1021). The timestamp rule is the
    documented one (``rest-api.md``, Timing security): refused when it is 1000 ms or more ahead
    of the server's time, or older than ``recvWindow`` (default 5000 ms)."""

    DEFAULT_RECV_WINDOW_MS = 5_000
    AHEAD_MS = 1_000

    def __init__(self, api_key: str, secret: str, balances: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key, self.secret, self.balances = api_key, secret, dict(balances)
        self.route("GET", "/api/v3/account", self._signed(self._account))
        self.route("GET", "/sapi/v1/capital/config/getall", self._signed(lambda request: Reply(200, [])))

    def config(self) -> dict[str, Any]:
        """ccxt constructor options for a ``ccxt.binance`` that talks to this server (spot only)."""
        import ccxt

        return {
            "urls": {"api": self._rewrite(ccxt.binance().urls["api"])},
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False},
        }

    def _signed(self, handler: Handler) -> Handler:
        def verify(request: Request) -> Reply:
            if request.headers.get("X-MBX-APIKEY") != self.api_key:
                return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
            params = _form(request)
            signature = params.pop("signature", "")
            expected = hmac.new(self.secret.encode(), urlencode(params).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature, expected):
                return self._error(400, -1022, "Signature for this request is not valid.")
            stamp, window = int(params.get("timestamp", 0)), int(params.get("recvWindow", self.DEFAULT_RECV_WINDOW_MS))
            if stamp >= self._now_ms() + self.AHEAD_MS:
                return self._error(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if self._now_ms() - stamp > window:
                return self._error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            return handler(request)

        return verify

    def _account(self, request: Request) -> Reply:
        balances = [{"asset": asset, "free": free, "locked": "0.00000000"} for asset, free in self.balances.items()]
        return Reply(
            200,
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": True,
                "updateTime": self._now_ms(),
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
            },
        )


def _form(request: Request) -> dict[str, str]:
    """The query parameters plus, for a urlencoded body (Binance POSTs), the body's."""
    params = dict(request.query)
    if request.body and "json" not in request.headers.get("Content-Type", ""):
        params.update(parse_qsl(request.body.decode(), keep_blank_values=True))
    return params


def _s(value: Decimal) -> str:
    """A decimal as exchanges write it: plain notation, no exponent."""
    return format(value.normalize(), "f") if value else "0"


# -- the venue-neutral account: balances, positions, orders, trades ------------------------


def forming_values(
    candle: Any, opened_s: float, step_s: float, now_s: float
) -> tuple[float, float, float, float, float]:
    """(open, high, low, close, volume) of a candle as a venue serves it at ``now_s``: final once
    closed; while it forms, running values that move toward the final ones (the venues serve
    the open candle with its values so far, not the ones it will close with)."""
    elapsed = (now_s - opened_s) / step_s
    if elapsed >= 1:
        return candle.open, candle.high, candle.low, candle.close, candle.volume
    close = candle.open + (candle.close - candle.open) * elapsed
    return candle.open, max(candle.open, close), min(candle.open, close), close, candle.volume * elapsed


@dataclass(frozen=True)
class Instrument:
    """A market a venue lists. Quantities are base units (venues convert contracts)."""

    symbol: str  # unified ("BTC/USDT", "BTC/USDT:USDT")
    base: str
    quote: str
    swap: bool = False
    contract_size: Decimal = Decimal(1)


@dataclass
class BookOrder:
    id: int
    client_id: str
    instrument: Instrument
    side: str  # "buy" | "sell"
    type: str  # "market" | "limit"
    amount: Decimal  # base units
    price: Decimal | None
    created_ms: int
    reduce_only: bool = False
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)  # quote value filled
    fee: Decimal = Decimal(0)
    status: str = "open"  # open | filled | canceled | expired
    updated_ms: int = 0
    locked: Decimal = Decimal(0)  # what the resting order holds of the account (quote or base)
    visible_at: float = 0.0  # monotonic time from which queries see it (delayed visibility)

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    @property
    def average(self) -> Decimal:
        return self.cost / self.filled if self.filled else Decimal(0)


@dataclass(frozen=True)
class BookTrade:
    id: int
    order: BookOrder
    amount: Decimal
    price: Decimal
    fee: Decimal
    time_ms: int
    maker: bool
    fee_asset: str = ""
    visible_at: float = 0.0  # monotonic time from which queries see it


@dataclass(frozen=True)
class FundingBooking:
    """Funding booked on a perpetual position at one settlement (positive: received)."""

    id: int
    symbol: str
    amount: Decimal
    time_ms: int
    balance: Decimal  # the wallet after it


class Reject(Exception):
    """An order the account cannot take: ``reason`` is "insufficient", "not_found" or a venue's
    own (e.g. a filter that failed)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Book:
    """Balances, positions, orders and trades of ONE account, venue-neutral.

    Market orders fill at once at ``prices[symbol]``; limit orders fill at once (at the
    current price) when marketable, otherwise rest and fill at their limit when
    ``set_price`` crosses them. ``partial_next(fraction)`` makes the next fill take only
    that fraction: the rest of a market order expires, a limit order keeps resting. Spot
    fees are taken from the asset received (base on a buy, quote on a sell), as Binance and
    Gate do unless fees are paid in BNB/GT (Binance spot ``rest-api.md``, the ``commissionAsset``
    of each fill; Gate ``docs/Order.md`` ``fee_currency``); swaps keep a signed position with an
    entry price, margin ``notional / leverage`` and realised PnL in the settle (quote) currency.

    Client order ids are the venues' business (``Binance``, ``Gate``): the book keeps every
    order and ``by_client_id`` answers the newest. ``visibility_delay`` seconds pass before an
    accepted order and its trades show in queries: Binance documents its order and trade
    queries as "Memory => Database" and answers -1007 "Send status unknown; execution status
    unknown" when the matching engine is slow (``rest-api.md`` data sources, ``errors.md``).
    """

    def __init__(
        self,
        instruments: list[Instrument],
        balances: Mapping[str, Any],
        *,
        fee: Any,
        prices: Mapping[str, Any],
        clock: Callable[[], float],
    ) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.balances = {asset: Decimal(str(v)) for asset, v in balances.items()}
        self.fee = Decimal(str(fee))
        self.prices = {symbol: Decimal(str(p)) for symbol, p in prices.items()}
        self.positions: dict[str, list[Decimal]] = {}  # symbol -> [signed size, entry price]
        self.leverage: dict[str, int] = {}
        self.margin_mode: dict[str, str] = {}  # swap symbol -> "cross" | "isolated" (venue default: cross)
        self.maintenance_rate = Decimal("0.004")  # of the notional (the venues' first tier)
        self.orders: dict[int, BookOrder] = {}
        self.trades: list[BookTrade] = []
        self.funding: list[FundingBooking] = []
        self._clock = clock
        self._partial: Decimal | None = None
        self._ids = iter(range(1001, 10**9))
        self.lock = threading.RLock()
        self.visibility_delay = 0.0

    def visible(self, record: BookOrder | BookTrade) -> bool:
        """Whether queries see ``record`` yet (an accepted order becomes visible after
        ``visibility_delay``)."""
        return record.visible_at <= time.monotonic()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- what tests do ------------------------------------------------------------------
    def set_price(self, symbol: str, price: Any) -> None:
        """Move the market: resting limit orders the new price crosses fill at their limit."""
        with self.lock:
            self.prices[symbol] = Decimal(str(price))
            for order in list(self.orders.values()):
                crossed = order.price is not None and (
                    (order.side == "buy" and self.prices[symbol] <= order.price)
                    or (order.side == "sell" and self.prices[symbol] >= order.price)
                )
                if order.status == "open" and order.instrument.symbol == symbol and crossed:
                    self._fill(order, order.price, maker=True)

    def liquidate(self, symbol: str, client_id: str) -> BookOrder | None:
        """The liquidation engine, the current price taken as the mark price: a position whose
        margin (isolated: its own; cross: the wallet's) plus unrealised PnL no longer covers the
        maintenance margin (``maintenance_rate`` of the notional) is closed at the mark by an
        order of the venue's own (``client_id``), and what it had as margin is lost (isolated:
        the position's margin; cross: the loss, at most the wallet)."""
        with self.lock:
            size, entry = self.positions.get(symbol, (Decimal(0), Decimal(0)))
            if not size:
                return None
            instrument, mark = self.instruments[symbol], self.prices[symbol]
            isolated = self.margin_mode_of(symbol) == "isolated"
            margin = abs(size) * entry / self.leverage_of(symbol)
            cushion = (
                (margin + size * (mark - entry))
                if isolated
                else self.balances.get(instrument.quote, Decimal(0)) + self.unrealized(instrument.quote)
            )
            if cushion > abs(size) * mark * self.maintenance_rate:
                return None
            now = self.now_ms()
            order = BookOrder(
                next(self._ids),
                client_id,
                instrument,
                "sell" if size > 0 else "buy",
                "market",
                abs(size),
                None,
                now,
                True,
                filled=abs(size),
                cost=abs(size) * mark,
                status="filled",
                updated_ms=now,
                visible_at=time.monotonic() + self.visibility_delay,
            )
            self.orders[order.id] = order
            wallet = self.balances.get(instrument.quote, Decimal(0))
            self.balances[instrument.quote] = wallet - (margin if isolated else min(wallet, -size * (mark - entry)))
            self.positions.pop(symbol)
            self.trades.append(
                BookTrade(
                    next(self._ids), order, abs(size), mark, Decimal(0), now, False, instrument.quote, order.visible_at
                )
            )
            return order

    def settle_funding(self, symbol: str, rate: Any) -> Decimal | None:
        """A funding settlement: the position pays ``rate`` of its notional at the current
        price (the mark) when long and the rate is positive, and receives it when short; the
        amount goes to the wallet and the venue's account book. None when flat: nothing is
        booked (Binance "Only positions held at the funding time pay or receive funding")."""
        with self.lock:
            size, _ = self.positions.get(symbol, (Decimal(0), Decimal(0)))
            if not size:
                return None
            instrument = self.instruments[symbol]
            amount = -size * self.prices[symbol] * Decimal(str(rate))
            self.balances[instrument.quote] = self.balances.get(instrument.quote, Decimal(0)) + amount
            self.funding.append(
                FundingBooking(next(self._ids), symbol, amount, self.now_ms(), self.balances[instrument.quote])
            )
            return amount

    def partial_next(self, fraction: Any) -> None:
        with self.lock:
            self._partial = Decimal(str(fraction))

    def by_client_id(self, client_id: str, *, visible: bool = False) -> BookOrder | None:
        """The newest order placed under ``client_id`` (``visible``: that queries can see)."""
        with self.lock:
            return next(
                (
                    o
                    for o in reversed(self.orders.values())
                    if o.client_id == client_id and (not visible or self.visible(o))
                ),
                None,
            )

    def open_by_client_id(self, client_id: str) -> BookOrder | None:
        with self.lock:
            return next((o for o in self.orders.values() if o.client_id == client_id and o.status == "open"), None)

    # -- what venues call ---------------------------------------------------------------
    def free(self, asset: str) -> Decimal:
        with self.lock:
            held = self.balances.get(asset, Decimal(0))
            held -= sum((o.locked for o in self.orders.values() if self._locked_asset(o) == asset), Decimal(0))
            return held - self.used_margin(asset)

    def locked(self, asset: str) -> Decimal:
        with self.lock:
            return sum((o.locked for o in self.orders.values() if self._locked_asset(o) == asset), Decimal(0))

    def used_margin(self, asset: str) -> Decimal:
        with self.lock:
            return sum(
                (
                    abs(size) * entry / self.leverage_of(symbol)
                    for symbol, (size, entry) in self.positions.items()
                    if self.instruments[symbol].quote == asset
                ),
                Decimal(0),
            )

    def leverage_of(self, symbol: str) -> int:
        return self.leverage.get(symbol, 10)

    def margin_mode_of(self, symbol: str) -> str:
        return self.margin_mode.get(symbol, "cross")

    def unrealized(self, asset: str) -> Decimal:
        """The unrealised PnL of the swap positions settled in ``asset``, at the current prices."""
        with self.lock:
            return sum(
                (
                    size * (self.prices[symbol] - entry)
                    for symbol, (size, entry) in self.positions.items()
                    if self.instruments[symbol].quote == asset
                ),
                Decimal(0),
            )

    def position(self, symbol: str) -> tuple[Decimal, Decimal]:
        with self.lock:
            size, entry = self.positions.get(symbol, (Decimal(0), Decimal(0)))
            return size, entry

    def place(
        self,
        instrument: Instrument,
        side: str,
        type: str,
        amount: Decimal,
        price: Decimal | None,
        client_id: str,
        reduce_only: bool = False,
    ) -> BookOrder:
        with self.lock:
            current = self.prices[instrument.symbol]
            reference = price if type == "limit" else current
            needed = self._needed(instrument, side, amount, reference)
            if needed > self.free(self._asset(instrument, side)):
                raise Reject("insufficient")
            now = self.now_ms()
            order = BookOrder(
                next(self._ids),
                client_id,
                instrument,
                side,
                type,
                amount,
                price,
                now,
                reduce_only,
                updated_ms=now,
                visible_at=time.monotonic() + self.visibility_delay,
            )
            self.orders[order.id] = order
            marketable = (
                type == "market" or (side == "buy" and current <= price) or (side == "sell" and current >= price)
            )
            if marketable:
                self._fill(order, current, maker=False)
                if type == "market" and order.status == "open":
                    order.status = "expired"  # an unfilled remainder of a market order does not rest
            if order.status == "open":
                order.locked = self._needed(instrument, side, order.remaining, price)
            return order

    def cancel(self, order: BookOrder) -> BookOrder:
        with self.lock:
            if order.status != "open":
                raise Reject("not_found")
            order.status, order.locked, order.updated_ms = "canceled", Decimal(0), self.now_ms()
            return order

    # -- accounting ---------------------------------------------------------------------
    def _asset(self, instrument: Instrument, side: str) -> str:
        return instrument.base if side == "sell" and not instrument.swap else instrument.quote

    def _locked_asset(self, order: BookOrder) -> str:
        return self._asset(order.instrument, order.side)

    def _needed(self, instrument: Instrument, side: str, amount: Decimal, price: Decimal) -> Decimal:
        if not instrument.swap:  # the fee comes out of what is received
            return amount if side == "sell" else amount * price
        size, _ = self.positions.get(instrument.symbol, (Decimal(0), Decimal(0)))
        closing = min(amount, abs(size)) if (size > 0) == (side == "sell") and size else Decimal(0)
        return (amount - closing) * price / self.leverage_of(instrument.symbol) + amount * price * self.fee

    def _fill(self, order: BookOrder, price: Decimal, *, maker: bool) -> None:
        amount = order.remaining
        if self._partial is not None:  # a venue that counts in contracts (Gate futures) fills whole ones
            step = order.instrument.contract_size if order.instrument.contract_size != 1 else Decimal("1e-8")
            amount, self._partial = (amount * self._partial // step * step).quantize(Decimal("1e-8")), None
        instrument, fee, fee_asset = order.instrument, amount * price * self.fee, order.instrument.quote
        if instrument.swap:
            self._trade_swap(instrument.symbol, amount if order.side == "buy" else -amount, price)
            self.balances[instrument.quote] -= fee
        else:
            sign = 1 if order.side == "buy" else -1
            if order.side == "buy":  # the commission comes out of the base asset received
                fee, fee_asset = amount * self.fee, instrument.base
            base, quote = (
                self.balances.get(instrument.base, Decimal(0)),
                self.balances.get(instrument.quote, Decimal(0)),
            )
            self.balances[instrument.base] = base + sign * amount - (fee if order.side == "buy" else 0)
            self.balances[instrument.quote] = quote - sign * amount * price - (fee if order.side == "sell" else 0)
        order.filled += amount
        order.cost += amount * price
        order.fee += fee
        order.updated_ms = self.now_ms()
        if order.remaining <= 0:
            order.status = "filled"
        if order.locked:
            order.locked = (
                self._needed(instrument, order.side, order.remaining, order.price)
                if order.remaining > 0
                else Decimal(0)
            )
        self.trades.append(
            BookTrade(
                next(self._ids),
                order,
                amount,
                price,
                fee,
                order.updated_ms,
                maker,
                fee_asset,
                max(order.visible_at, time.monotonic() + self.visibility_delay),
            )
        )

    def _trade_swap(self, symbol: str, signed: Decimal, price: Decimal) -> None:
        size, entry = self.positions.get(symbol, (Decimal(0), Decimal(0)))
        if size and (size > 0) != (signed > 0):
            closing = min(abs(signed), abs(size))
            direction = 1 if size > 0 else -1
            self.balances[self.instruments[symbol].quote] += closing * (price - entry) * direction
            size -= direction * closing
            signed += direction * closing
        if signed:
            entry = (entry * abs(size) + price * abs(signed)) / (abs(size) + abs(signed))
            size += signed
        if size:
            self.positions[symbol] = [size, entry]
        else:
            self.positions.pop(symbol, None)


# -- Binance: spot (/api/v3) and USDⓈ-M futures (/fapi) ----------------------------------

_BINANCE_STATUS = {"filled": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED"}
_HOUR_MS = 3_600_000


def _multiple(value: Decimal, step: Decimal) -> bool:
    return step == 0 or value % step == 0


def _window(params: Mapping[str, str], span_ms: int, now_ms: int) -> tuple[int, int] | None:
    """The [start, end] a Binance history query covers, or None when it asks for more than
    ``span_ms``: both bounds given, at most the span apart; one given, the span from (or up
    to) it; none, the span up to now (``rest-api.md``: "The time between startTime and endTime
    can't be longer than 24 hours"; USDⓈ-M ``userTrades``/``allOrders``: 7 days, "If
    startTime and endTime are both not sent, then the last 7 days' data will be returned")."""
    start, end = params.get("startTime"), params.get("endTime")
    if start is not None and end is not None:
        start, end = int(start), int(end)
        return (start, end) if 0 <= end - start <= span_ms else None
    if start is not None:
        return int(start), int(start) + span_ms
    end = int(end) if end is not None else now_ms
    return end - span_ms, end


# -- stop orders: resting with the venue until the price reaches them ----------------------


@dataclass
class StopOrder:
    """A stop resting with the venue until the price reaches ``trigger``: then it places an
    order (``actual``): a Binance spot STOP_LOSS_LIMIT becomes a limit order at ``limit`` under
    the same order id, a USDⓈ-M STOP_MARKET or a Gate price-triggered order an order of its
    own; reduce-only capped to the position."""

    id: int
    client_id: str
    instrument: Instrument
    side: str
    amount: Decimal
    trigger: Decimal
    limit: Decimal | None  # None: market on trigger
    reduce_only: bool
    created_ms: int
    status: str = "open"  # open | triggered | canceled | rejected | expired
    updated_ms: int = 0
    actual: BookOrder | None = None  # the order the trigger released

    def reached(self, price: Decimal) -> bool:
        return price <= self.trigger if self.side == "sell" else price >= self.trigger


def _place_on_trigger(book: Book, stop: StopOrder, text: str) -> BookOrder | None:
    """Trigger ``stop``: the order it places under ``text`` (a limit order at ``stop.limit``,
    else a market order; reduce-only, at most the position it reduces), or None, the stop
    ``rejected``, when nothing is left to reduce or the account cannot take the order."""
    stop.updated_ms = book.now_ms()
    amount = stop.amount
    if stop.reduce_only:
        size, _ = book.position(stop.instrument.symbol)
        closes = size and (size > 0) == (stop.side == "sell")
        amount = min(amount, abs(size)) if closes else Decimal(0)
    try:
        order = (
            book.place(
                stop.instrument,
                stop.side,
                "limit" if stop.limit else "market",
                amount,
                stop.limit,
                text,
                stop.reduce_only,
            )
            if amount > 0
            else None
        )
    except Reject:
        order = None
    if order is None:
        stop.status = "rejected"
    else:
        stop.status, stop.actual = "triggered", order
    return order


class _VenueStops:
    """A venue's resting stops (``stops``) over its ``spot`` and ``futures`` books: those the
    price reaches trigger (``trigger_stops``, which ``set_price`` calls), each as the venue
    says (``_release``)."""

    spot: Book
    futures: Book
    stops: dict[int, StopOrder]

    def trigger_stops(self, symbol: str) -> None:
        """Release the stops the current price reaches."""
        for book in (self.spot, self.futures):
            with book.lock:
                for stop in list(self.stops.values()):
                    price = book.prices.get(stop.instrument.symbol)
                    if stop.status != "open" or stop.instrument.symbol not in book.instruments or price is None:
                        continue
                    if stop.reached(price):
                        self._release(book, stop)

    def _release(self, book: Book, stop: StopOrder) -> None:
        """Trigger ``stop`` as the venue does (``_place_on_trigger``, and what the venue adds)."""
        raise NotImplementedError


# -- Binance stop orders: spot STOP_LOSS_LIMIT and USDⓈ-M conditional (algo) orders -------


class _BinanceStops(_VenueStops):
    """Stop orders as Binance runs them, for ``Binance`` (which owns ``spot`` and ``futures``).

    Spot ``STOP_LOSS_LIMIT`` goes to ``POST /api/v3/order`` with ``stopPrice``, ``price`` and
    ``timeInForce``; it rests untriggered ("the order is placed when the stopPrice is
    reached", binance-spot-api-docs ``rest-api.md``, New order; a sell stop triggers when the
    last price falls to ``stopPrice``) and is queried and cancelled like any order. USDⓈ-M
    conditional orders are algo orders since 2025-12: ``POST /fapi/v1/algoOrder`` with
    ``algoType=CONDITIONAL``, ``type=STOP_MARKET``, ``triggerPrice``, ``clientAlgoId``;
    ``GET``/``DELETE /fapi/v1/algoOrder`` by ``algoId`` or ``clientAlgoId``,
    ``GET /fapi/v1/openAlgoOrders``; statuses NEW, CANCELED, TRIGGERED, FINISHED, REJECTED,
    and ``actualOrderId`` names the order the trigger placed (Binance derivatives docs "New
    Algo Order", "Query Algo Order", "Event Algo Order Update"). A reduce-only stop with no
    position left to reduce is rejected when it triggers.
    """

    def _route_stops(self) -> None:
        self.stops: dict[int, StopOrder] = {}
        self._plain = {(m, p): self._routes[(m, p)] for m, p in self._routes if p.startswith("/api/v3/")}
        self.route("POST", "/api/v3/order", self._signed(self._spot_create_or_stop))
        self.route("GET", "/api/v3/order", self._signed(self._spot_get_or_stop))
        self.route("DELETE", "/api/v3/order", self._signed(self._spot_cancel_or_stop))
        self.route("GET", "/api/v3/openOrders", self._signed(self._spot_open_with_stops))
        self.route("POST", "/fapi/v1/algoOrder", self._signed(self._algo_create))
        self.route("GET", "/fapi/v1/algoOrder", self._signed(self._algo_get))
        self.route("DELETE", "/fapi/v1/algoOrder", self._signed(self._algo_cancel))
        self.route("GET", "/fapi/v1/openAlgoOrders", self._signed(self._algo_open))

    def _release(self, book: Book, stop: StopOrder) -> None:
        order = _place_on_trigger(book, stop, "" if stop.limit is None else stop.client_id)
        if order is not None and stop.limit is not None:  # spot: the same order id, now a limit order on the book
            del book.orders[order.id]
            order.id = stop.id
            book.orders[order.id] = order

    # -- spot ---------------------------------------------------------------------------
    def _spot_stop(self, params: Mapping[str, str], *, ended: bool = False) -> StopOrder | None:
        """The spot stop a query names while it waits (``ended``: also one cancelled or rejected
        before it triggered; a triggered one is the limit order it became)."""
        statuses = ("open", "canceled", "rejected") if ended else ("open",)
        if "origClientOrderId" in params:
            return next(
                (
                    s
                    for s in reversed(self.stops.values())
                    if s.client_id == params["origClientOrderId"]
                    and s.status in statuses
                    and s.instrument.symbol in self.spot.instruments
                ),
                None,
            )
        stop = self.stops.get(int(params.get("orderId", 0)))
        return stop if stop is not None and stop.status in statuses else None

    def _spot_stop_json(self, stop: StopOrder) -> dict[str, Any]:
        return {
            "symbol": self.market_id(stop.instrument.symbol),
            "orderId": stop.id,
            "orderListId": -1,
            "clientOrderId": stop.client_id,
            "price": _s(stop.limit),
            "origQty": _s(stop.amount),
            "executedQty": "0",
            "cummulativeQuoteQty": "0",
            "status": {"open": "NEW", "canceled": "CANCELED", "rejected": "REJECTED"}.get(stop.status, "NEW"),
            "timeInForce": "GTC",
            "type": "STOP_LOSS_LIMIT",
            "side": stop.side.upper(),
            "stopPrice": _s(stop.trigger),
            "time": stop.created_ms,
            "updateTime": stop.updated_ms or stop.created_ms,
            "isWorking": False,
            "workingTime": -1,
            "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _spot_create_or_stop(self, request: Request) -> Reply:
        params = _form(request)
        if params.get("type") != "STOP_LOSS_LIMIT":
            return self._plain[("POST", "/api/v3/order")](request)
        instrument = self._instrument(self.spot, params.get("symbol"))
        if instrument is None:
            return self._error(400, -1121, "Invalid symbol.")
        if not {"stopPrice", "price", "timeInForce", "quantity"} <= params.keys():
            return self._error(400, -1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
        quantity, limit = Decimal(params["quantity"]), Decimal(params["price"])
        failure = self._filter_failure(self.spot, instrument, "limit", quantity, limit, False)
        if failure is not None:
            return failure
        trigger, side = Decimal(params["stopPrice"]), params["side"].lower()
        with self.spot.lock:
            if (
                self.spot.prices[instrument.symbol] <= trigger
                if side == "sell"
                else self.spot.prices[instrument.symbol] >= trigger
            ):
                return self._error(400, -2010, "Stop price would trigger immediately.")
            if quantity > self.spot.free(instrument.base if side == "sell" else instrument.quote) and side == "sell":
                return self._error(400, -2010, "Account has insufficient balance for requested action.")
            now = self.spot.now_ms()
            stop = StopOrder(
                next(self.spot._ids),
                params["newClientOrderId"],
                instrument,
                side,
                quantity,
                trigger,
                limit,
                False,
                now,
                updated_ms=now,
            )
            self.stops[stop.id] = stop
        return Reply(200, {**self._spot_stop_json(stop), "transactTime": now, "fills": []})

    def _spot_get_or_stop(self, request: Request) -> Reply:
        stop = self._spot_stop(_form(request), ended=True)
        return Reply(200, self._spot_stop_json(stop)) if stop else self._plain[("GET", "/api/v3/order")](request)

    def _spot_cancel_or_stop(self, request: Request) -> Reply:
        stop = self._spot_stop(_form(request))
        if stop is None:
            return self._plain[("DELETE", "/api/v3/order")](request)
        stop.status, stop.updated_ms = "canceled", self.spot.now_ms()
        return Reply(200, self._spot_stop_json(stop))

    def _spot_open_with_stops(self, request: Request) -> Reply:
        reply = self._plain[("GET", "/api/v3/openOrders")](request)
        instrument = self._instrument(self.spot, _form(request).get("symbol"))
        resting = [
            self._spot_stop_json(s)
            for s in self.stops.values()
            if s.status == "open"
            and s.instrument.symbol in self.spot.instruments
            and instrument in (None, s.instrument)
        ]
        return Reply(reply.status, [*reply.body, *resting]) if reply.status == 200 else reply

    # -- USDⓈ-M algo orders -------------------------------------------------------------
    def _algo_json(self, stop: StopOrder) -> dict[str, Any]:
        actual = stop.actual
        status = {"open": "NEW", "canceled": "CANCELED", "rejected": "REJECTED"}.get(stop.status)
        if status is None:  # triggered: FINISHED once the released order is done
            status = "TRIGGERED" if actual is not None and actual.status == "open" else "FINISHED"
        return {
            "algoId": stop.id,
            "clientAlgoId": stop.client_id,
            "algoType": "CONDITIONAL",
            "orderType": "STOP_MARKET",
            "symbol": self.market_id(stop.instrument.symbol.split(":")[0]),
            "side": stop.side.upper(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": _s(stop.amount),
            "algoStatus": status,
            "actualOrderId": str(actual.id) if actual else "",
            "actualPrice": _s(actual.average) if actual else "0",
            "triggerPrice": _s(stop.trigger),
            "price": "0",
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": False,
            "priceProtect": False,
            "reduceOnly": stop.reduce_only,
            "createTime": stop.created_ms,
            "updateTime": stop.updated_ms or stop.created_ms,
            "triggerTime": stop.updated_ms if actual else 0,
            "goodTillDate": 0,
        }

    def _algo_find(self, params: Mapping[str, str]) -> StopOrder | None:
        if "clientAlgoId" in params:
            return next(
                (
                    s
                    for s in reversed(self.stops.values())
                    if s.client_id == params["clientAlgoId"] and s.instrument.symbol in self.futures.instruments
                ),
                None,
            )
        return self.stops.get(int(params.get("algoId", 0)))

    def _algo_create(self, request: Request) -> Reply:
        params = _form(request)
        instrument = self._instrument(self.futures, params.get("symbol"))
        if instrument is None:
            return self._error(400, -1121, "Invalid symbol.")
        if (
            params.get("algoType") != "CONDITIONAL"
            or params.get("type") != "STOP_MARKET"
            or "triggerPrice" not in params
        ):
            return self._error(400, -1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
        quantity, trigger, side = Decimal(params["quantity"]), Decimal(params["triggerPrice"]), params["side"].lower()
        failure = self._filter_failure(self.futures, instrument, "limit", quantity, trigger, True)
        if failure is not None:
            return failure
        with self.futures.lock:
            price = self.futures.prices[instrument.symbol]
            if price <= trigger if side == "sell" else price >= trigger:
                return self._error(400, -2021, "Order would immediately trigger.")
            if any(s.client_id == params.get("clientAlgoId") and s.status == "open" for s in self.stops.values()):
                return self._error(400, -4116, "ClientOrderId is duplicated.")
            now = self.futures.now_ms()
            stop = StopOrder(
                next(self.futures._ids),
                params["clientAlgoId"],
                instrument,
                side,
                quantity,
                trigger,
                None,
                params.get("reduceOnly") == "true",
                now,
                updated_ms=now,
            )
            self.stops[stop.id] = stop
        return Reply(200, self._algo_json(stop))

    def _algo_get(self, request: Request) -> Reply:
        stop = self._algo_find(_form(request))
        return Reply(200, self._algo_json(stop)) if stop else self._error(400, -2013, "Order does not exist.")

    def _algo_cancel(self, request: Request) -> Reply:
        stop = self._algo_find(_form(request))
        if stop is None or stop.status != "open":
            return self._error(400, -2011, "Unknown order sent.")
        stop.status, stop.updated_ms = "canceled", self.futures.now_ms()
        return Reply(200, {"algoId": stop.id, "clientAlgoId": stop.client_id, "code": "200", "msg": "success"})

    def _algo_open(self, request: Request) -> Reply:
        instrument = self._instrument(self.futures, _form(request).get("symbol"))
        return Reply(
            200,
            [
                self._algo_json(s)
                for s in self.stops.values()
                if s.status == "open"
                and s.instrument.symbol in self.futures.instruments
                and instrument in (None, s.instrument)
            ],
        )


class Binance(_BinanceStops, BinanceAccount):
    """Binance spot and USDⓈ-M perpetual trading for one account, signatures checked.

    ``balances`` is the spot wallet, ``futures_balances`` the futures wallet; ``markets``
    lists spot symbols ("BTC/USDT"), each also traded as the perpetual "BTC/USDT:USDT";
    ``prices`` the current prices (one per spot symbol, shared by its perpetual). Answers
    in Binance's formats and error codes: -2010 (duplicate order, insufficient balance),
    -4116 / -2019 (the same on futures), -2013 / -2011 (unknown order), -1013 / -1111 / -4164
    (filter failures), -1127 (a history window too long).

    Strict as Binance is: a ``newClientOrderId`` is refused only while an order with it is
    open ("Orders with the same newClientOrderID can be accepted only when the previous one is
    filled", ``rest-api.md``, New order; USDⓈ-M: "A unique id among open orders"), a lookup
    by client id answers the newest such order, accepted orders become visible to queries
    only after ``visibility_delay`` seconds (order and trade queries read "Memory =>
    Database", ``rest-api.md``), every order passes the symbol's filters, and trade and order
    history come in windows of 24 h (spot) or 7 days (USDⓈ-M).
    """

    SPOT_HISTORY_MS = 24 * _HOUR_MS  # rest-api.md, myTrades and allOrders
    FUTURES_HISTORY_MS = 7 * 24 * _HOUR_MS  # USDⓈ-M userTrades and allOrders

    FUTURES_FILTERS = [
        {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
    ]

    def __init__(
        self,
        api_key: str,
        secret: str,
        balances: Mapping[str, Any],
        *,
        futures_balances: Mapping[str, Any] | None = None,
        markets: tuple[str, ...] = ("BTC/USDT",),
        prices: Mapping[str, Any] | None = None,
        fee: Any = "0.001",
        visibility_delay: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key, secret, {}, **kwargs)
        self.markets = tuple(markets)
        prices = dict(prices or {symbol: "30000" for symbol in markets})
        spot = [Instrument(s, *s.split("/")) for s in markets]
        swaps = [Instrument(f"{s}:{s.split('/')[1]}", *s.split("/"), swap=True) for s in markets]
        self.spot = Book(spot, balances, fee=fee, prices=prices, clock=self.clock)
        self.futures = Book(
            swaps,
            futures_balances or {"USDT": "0"},
            fee=fee,
            clock=self.clock,
            prices={f"{s}:{s.split('/')[1]}": p for s, p in prices.items()},
        )
        self.spot.visibility_delay = self.futures.visibility_delay = visibility_delay
        self.route("GET", "/api/v3/exchangeInfo", self._exchange_info)
        self.route("GET", "/api/v3/account", self._signed(self._spot_account))
        for api, book in (("/api/v3", self.spot), ("/fapi/v1", self.futures)):
            self.route("POST", f"{api}/order", self._signed(self._create(book)))
            self.route("GET", f"{api}/order", self._signed(self._get(book)))
            self.route("DELETE", f"{api}/order", self._signed(self._cancel(book)))
            self.route("GET", f"{api}/openOrders", self._signed(self._open_orders(book)))
            self.route("GET", f"{api}/allOrders", self._signed(self._all_orders(book)))
        self.route("GET", "/api/v3/myTrades", self._signed(self._trades(self.spot)))
        self.route("GET", "/fapi/v1/userTrades", self._signed(self._trades(self.futures)))
        self.route("GET", "/fapi/v1/exchangeInfo", self._futures_info)
        self.route("GET", "/fapi/v1/klines", self._klines)
        self.route("GET", "/fapi/v3/account", self._signed(self._futures_account))
        self.route("GET", "/fapi/v3/positionRisk", self._signed(self._position_risk))
        self.route("GET", "/fapi/v1/leverageBracket", self._signed(self._brackets))
        self.route("GET", "/fapi/v1/income", self._signed(self._income))
        self.route("POST", "/fapi/v1/leverage", self._signed(self._set_leverage))
        self.route("POST", "/fapi/v1/marginType", self._signed(self._set_margin_type))
        self._route_stops()

    def set_price(self, symbol: str, price: Any) -> None:
        """The spot symbol's price, for both its spot market and its perpetual; stops it reaches trigger."""
        self.spot.set_price(symbol, price)
        self.futures.set_price(f"{symbol}:{symbol.split('/')[1]}", price)
        self.trigger_stops(symbol)
        # USDⓈ-M Event Order Update: a liquidation order's client order id is "autoclose-XXX"
        self.futures.liquidate(f"{symbol}:{symbol.split('/')[1]}", f"autoclose-{self._now_ms()}")

    def config(self, market_type: str = "spot") -> dict[str, Any]:
        """ccxt constructor options for a ``ccxt.binance`` that talks to this server."""
        import ccxt

        types = {"spot": ["spot"], "swap": ["linear"]}[market_type]
        return {
            "urls": {"api": self._rewrite(ccxt.binance().urls["api"])},
            "options": {"fetchMarkets": {"types": types}, "fetchMargins": False, "defaultType": market_type},
        }

    def _exchange_info(self, request: Request) -> Reply:
        reply = super()._exchange_info(request)
        listed = dict.fromkeys([*self.candles, *self.markets])
        return Reply(200, {**reply.body, "symbols": [self._symbol_info(symbol) for symbol in listed]})

    def _futures_info(self, request: Request) -> Reply:
        symbols = []
        for symbol in self.markets:
            base, quote = symbol.split("/")
            symbols.append(
                {
                    "symbol": self.market_id(symbol),
                    "pair": self.market_id(symbol),
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": self.symbol_status.get(symbol, "TRADING"),
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": base,
                    "quoteAsset": quote,
                    "marginAsset": quote,
                    "pricePrecision": 2,
                    "quantityPrecision": 3,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "filters": self.FUTURES_FILTERS,
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                }
            )
        return Reply(
            200,
            {
                "timezone": "UTC",
                "serverTime": self._now_ms(),
                "futuresType": "U_MARGINED",
                "rateLimits": [],
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True}],
                "symbols": symbols,
            },
        )

    def _instrument(self, book: Book, market_id: str | None) -> Instrument | None:
        return next((i for i in book.instruments.values() if self.market_id(i.symbol.split(":")[0]) == market_id), None)

    def _order_json(self, order: BookOrder, book: Book) -> dict[str, Any]:
        status = _BINANCE_STATUS.get(order.status) or ("PARTIALLY_FILLED" if order.filled else "NEW")
        common = {
            "symbol": self.market_id(order.instrument.symbol.split(":")[0]),
            "orderId": order.id,
            "clientOrderId": order.client_id,
            "price": _s(order.price or Decimal(0)),
            "origQty": _s(order.amount),
            "executedQty": _s(order.filled),
            "status": status,
            "timeInForce": "GTC",
            "type": order.type.upper(),
            "side": order.side.upper(),
            "time": order.created_ms,
            "updateTime": order.updated_ms,
        }
        if book is self.futures:
            return {
                **common,
                "avgPrice": _s(order.average),
                "cumQty": _s(order.filled),
                "cumQuote": _s(order.cost),
                "reduceOnly": order.reduce_only,
                "closePosition": False,
                "positionSide": "BOTH",
                "stopPrice": "0",
                "workingType": "CONTRACT_PRICE",
                "priceProtect": False,
                "origType": order.type.upper(),
                "priceMatch": "NONE",
                "selfTradePreventionMode": "NONE",
                "goodTillDate": 0,
            }
        return {
            **common,
            "orderListId": -1,
            "cummulativeQuoteQty": _s(order.cost),
            "isWorking": True,
            "workingTime": order.created_ms,
            "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _create(self, book: Book) -> Handler:
        futures = book is self.futures

        def create(request: Request) -> Reply:
            params = _form(request)
            instrument = self._instrument(book, params.get("symbol"))
            if instrument is None:
                return self._error(400, -1121, "Invalid symbol.")
            if self.symbol_status.get(instrument.symbol.split(":")[0], "TRADING") != "TRADING":
                return self._error(400, -1013, "Market is closed.")  # errors.md; ccxt: MarketClosed
            price = Decimal(params["price"]) if "price" in params else None
            quantity, type = Decimal(params["quantity"]), params["type"].lower()
            failure = self._filter_failure(book, instrument, type, quantity, price, params.get("reduceOnly") == "true")
            if failure is not None:
                return failure
            with book.lock:
                if book.open_by_client_id(params["newClientOrderId"]) is not None:  # unique among open orders only
                    return (
                        self._error(400, -4116, "ClientOrderId is duplicated.")
                        if futures
                        else self._error(400, -2010, "Duplicate order sent.")
                    )
                try:
                    order = book.place(
                        instrument,
                        params["side"].lower(),
                        type,
                        quantity,
                        price,
                        params["newClientOrderId"],
                        params.get("reduceOnly") == "true",
                    )
                except Reject:
                    return (
                        self._error(400, -2019, "Margin is insufficient.")
                        if futures
                        else self._error(400, -2010, "Account has insufficient balance for requested action.")
                    )
            body = self._order_json(order, book)
            if not futures:
                fills = [
                    {
                        "price": _s(t.price),
                        "qty": _s(t.amount),
                        "commission": _s(t.fee),
                        "commissionAsset": t.fee_asset,
                        "tradeId": t.id,
                    }
                    for t in book.trades
                    if t.order is order
                ]
                body.update(transactTime=order.created_ms, fills=fills)
            return Reply(200, body)

        return create

    def _filter_failure(
        self, book: Book, instrument: Instrument, type: str, quantity: Decimal, price: Decimal | None, reduce_only: bool
    ) -> Reply | None:
        """The symbol's filters, as the exchange checks them before the matching engine:
        spot answers -1013 "Filter failure: <FILTER>" (``errors.md``, Filter failures),
        USDⓈ-M -1111 (quantity or price precision), -4164 (notional below the minimum unless
        reduce-only), -4014 (price off the tick)."""
        futures = book is self.futures
        filters = {
            f["filterType"]: f
            for f in (self.FUTURES_FILTERS if futures else self._symbol_info(instrument.symbol)["filters"])
        }
        lot, tick = filters["LOT_SIZE"], filters["PRICE_FILTER"]
        reference = book.prices[instrument.symbol]

        def spot(name: str) -> Reply:
            return self._error(400, -1013, f"Filter failure: {name}")

        if not (Decimal(lot["minQty"]) <= quantity <= Decimal(lot["maxQty"])) or not _multiple(
            quantity, Decimal(lot["stepSize"])
        ):
            return (
                self._error(400, -1111, "Precision is over the maximum defined for this asset.")
                if futures
                else spot("LOT_SIZE")
            )
        if price is not None and (
            not Decimal(tick["minPrice"]) <= price <= Decimal(tick["maxPrice"])
            or not _multiple(price, Decimal(tick["tickSize"]))
        ):
            return self._error(400, -4014, "Price not increased by tick size.") if futures else spot("PRICE_FILTER")
        notional = quantity * (price if type == "limit" else reference)
        if futures:
            minimum = Decimal(filters["MIN_NOTIONAL"]["notional"])
            if notional < minimum and not reduce_only:
                return self._error(
                    400, -4164, f"Order's notional must be no smaller than {minimum} (unless you choose reduce only)."
                )
            return None
        rule = filters["NOTIONAL"]
        if (type == "limit" or rule["applyMinToMarket"]) and notional < Decimal(rule["minNotional"]):
            return spot("NOTIONAL")
        if (type == "limit" or rule["applyMaxToMarket"]) and notional > Decimal(rule["maxNotional"]):
            return spot("NOTIONAL")
        band = filters["PERCENT_PRICE"]
        if price is not None and not reference * Decimal(band["multiplierDown"]) <= price <= reference * Decimal(
            band["multiplierUp"]
        ):
            return spot("PERCENT_PRICE")
        return None

    def _find(self, book: Book, params: Mapping[str, str], *, visible: bool = True) -> BookOrder | None:
        """The order a query names, if queries see it yet; by client id, the newest."""
        if "origClientOrderId" in params:
            return book.by_client_id(params["origClientOrderId"], visible=visible)
        order = book.orders.get(int(params.get("orderId", 0)))
        return order if order is not None and (not visible or book.visible(order)) else None

    def _get(self, book: Book) -> Handler:
        def get(request: Request) -> Reply:
            order = self._find(book, _form(request))
            if order is None:
                return self._error(400, -2013, "Order does not exist.")
            return Reply(200, self._order_json(order, book))

        return get

    def _cancel(self, book: Book) -> Handler:
        def cancel(request: Request) -> Reply:
            order = self._find(book, _form(request), visible=False)  # the matching engine knows it
            try:
                book.cancel(order) if order is not None else None
            except Reject:
                order = None
            if order is None:
                return self._error(400, -2011, "Unknown order sent.")
            return Reply(200, self._order_json(order, book))

        return cancel

    def _open_orders(self, book: Book) -> Handler:
        def open_orders(request: Request) -> Reply:
            symbol = _form(request).get("symbol")
            return Reply(
                200,
                [
                    self._order_json(o, book)
                    for o in book.orders.values()
                    if o.status == "open"
                    and book.visible(o)
                    and (symbol is None or self._instrument(book, symbol) is o.instrument)
                ],
            )

        return open_orders

    def _history_span(self, book: Book) -> int:
        return self.FUTURES_HISTORY_MS if book is self.futures else self.SPOT_HISTORY_MS

    def _all_orders(self, book: Book) -> Handler:
        """GET allOrders: open, canceled and filled orders created in the window, oldest first."""

        def all_orders(request: Request) -> Reply:
            params = _form(request)
            instrument = self._instrument(book, params.get("symbol"))
            window = _window(params, self._history_span(book), self._now_ms())
            if window is None:
                return self._error(
                    400, -1127, f"More than {self._history_span(book) // _HOUR_MS} hours between startTime and endTime."
                )
            rows = [
                self._order_json(o, book)
                for o in book.orders.values()
                if o.instrument is instrument and book.visible(o) and window[0] <= o.created_ms <= window[1]
            ]
            return Reply(200, rows[: int(params.get("limit", 500))])

        return all_orders

    def _trades(self, book: Book) -> Handler:
        futures = book is self.futures

        def trades(request: Request) -> Reply:
            params = _form(request)
            instrument = self._instrument(book, params.get("symbol"))
            window = _window(params, self._history_span(book), self._now_ms())
            if window is None:
                return self._error(
                    400, -1127, f"More than {self._history_span(book) // _HOUR_MS} hours between startTime and endTime."
                )
            start, end = window
            rows = []
            for t in book.trades:
                if t.order.instrument is instrument and start <= t.time_ms <= end and book.visible(t):
                    row = {
                        "symbol": params["symbol"],
                        "id": t.id,
                        "orderId": t.order.id,
                        "price": _s(t.price),
                        "qty": _s(t.amount),
                        "quoteQty": _s(t.amount * t.price),
                        "commission": _s(t.fee),
                        "commissionAsset": t.fee_asset,
                        "time": t.time_ms,
                        "maker": t.maker,
                    }
                    if futures:
                        row.update(
                            side=t.order.side.upper(), buyer=t.order.side == "buy", positionSide="BOTH", realizedPnl="0"
                        )
                    else:
                        row.update(orderListId=-1, isBuyer=t.order.side == "buy", isMaker=t.maker, isBestMatch=True)
                    rows.append(row)
            return Reply(200, rows[-int(params.get("limit", 500)) :])

        return trades

    def _income(self, request: Request) -> Reply:
        """USDⓈ-M income history, ``GET /fapi/v1/income`` (Account endpoints, "Get Income
        History"): ``symbol`` and ``incomeType`` optional filters; ``startTime``/``endTime``
        inclusive, without both "the recent 7-day data will be returned"; ``limit`` default 100,
        max 1000; oldest first. Only ``FUNDING_FEE`` entries are booked here."""
        params = _form(request)
        limit = int(params.get("limit", 100))
        if not 1 <= limit <= 1000:
            return self._error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if params.get("incomeType", "FUNDING_FEE") != "FUNDING_FEE":
            return Reply(200, [])
        instrument = self._instrument(self.futures, params["symbol"]) if "symbol" in params else None
        if "symbol" in params and instrument is None:
            return self._error(400, -1121, "Invalid symbol.")
        now = self._now_ms()
        start = int(params.get("startTime", now - 7 * 24 * _HOUR_MS if "endTime" not in params else 0))
        end = int(params.get("endTime", now))
        with self.futures.lock:
            rows = [
                {
                    "symbol": self.market_id(b.symbol.split(":")[0]),
                    "incomeType": "FUNDING_FEE",
                    "income": _s(b.amount),
                    "asset": self.futures.instruments[b.symbol].quote,
                    "info": "FUNDING_FEE",
                    "time": b.time_ms,
                    "tranId": b.id,
                    "tradeId": "",
                }
                for b in self.futures.funding
                if start <= b.time_ms <= end and (instrument is None or b.symbol == instrument.symbol)
            ]
        return Reply(200, rows[:limit])

    def _spot_account(self, request: Request) -> Reply:
        balances = [
            {"asset": asset, "free": _s(self.spot.free(asset)), "locked": _s(self.spot.locked(asset))}
            for asset in self.spot.balances
        ]
        return Reply(
            200,
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": True,
                "updateTime": self._now_ms(),
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
            },
        )

    def _futures_account(self, request: Request) -> Reply:
        """GET /fapi/v3/account: ``marginBalance`` is the wallet balance plus the unrealised PnL
        (USDⓈ-M "Account Information V3"), and ccxt reports it as the balance's ``total``."""
        assets, totals = [], {"wallet": Decimal(0), "pnl": Decimal(0)}
        for asset, wallet in self.futures.balances.items():
            margin = self.futures.used_margin(asset) + self.futures.locked(asset)
            pnl = self.futures.unrealized(asset)
            totals["wallet"] += wallet
            totals["pnl"] += pnl
            assets.append(
                {
                    "asset": asset,
                    "walletBalance": _s(wallet),
                    "unrealizedProfit": _s(pnl),
                    "marginBalance": _s(wallet + pnl),
                    "maintMargin": "0",
                    "initialMargin": _s(margin),
                    "positionInitialMargin": _s(self.futures.used_margin(asset)),
                    "openOrderInitialMargin": _s(self.futures.locked(asset)),
                    "crossWalletBalance": _s(wallet),
                    "crossUnPnl": _s(pnl),
                    "availableBalance": _s(self.futures.free(asset) + min(pnl, Decimal(0))),
                    "maxWithdrawAmount": _s(self.futures.free(asset)),
                    "updateTime": self._now_ms(),
                }
            )
        return Reply(
            200,
            {
                "totalWalletBalance": _s(totals["wallet"]),
                "totalUnrealizedProfit": _s(totals["pnl"]),
                "totalMarginBalance": _s(totals["wallet"] + totals["pnl"]),
                "assets": assets,
                "positions": [],
            },
        )

    def _position_risk(self, request: Request) -> Reply:
        rows = []
        for symbol, (size, entry) in list(self.futures.positions.items()):
            mark = self.futures.prices[symbol]
            leverage = self.futures.leverage_of(symbol)
            isolated = abs(size) * entry / leverage if self.futures.margin_mode_of(symbol) == "isolated" else Decimal(0)
            rows.append(
                {
                    "symbol": self.market_id(symbol.split(":")[0]),
                    "positionSide": "BOTH",
                    "positionAmt": _s(size),
                    "entryPrice": _s(entry),
                    "breakEvenPrice": _s(entry),
                    "markPrice": _s(mark),
                    "unRealizedProfit": _s(size * (mark - entry)),
                    "liquidationPrice": "0",
                    "isolatedMargin": _s(isolated + size * (mark - entry)) if isolated else "0",
                    "notional": _s(size * mark),
                    "marginAsset": "USDT",
                    "isolatedWallet": _s(isolated),
                    "initialMargin": _s(abs(size) * mark / leverage),
                    "maintMargin": "0",
                    "positionInitialMargin": _s(abs(size) * mark / leverage),
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": self._now_ms(),
                }
            )
        return Reply(200, rows)

    def _brackets(self, request: Request) -> Reply:
        return Reply(
            200,
            [
                {
                    "symbol": self.market_id(s),
                    "notionalCoef": 1.0,
                    "brackets": [
                        {
                            "bracket": 1,
                            "initialLeverage": 125,
                            "notionalCap": 50000000,
                            "notionalFloor": 0,
                            "maintMarginRatio": 0.004,
                            "cum": 0.0,
                        }
                    ],
                }
                for s in self.markets
            ],
        )

    def _set_leverage(self, request: Request) -> Reply:
        params = _form(request)
        instrument = self._instrument(self.futures, params.get("symbol"))
        leverage = int(params["leverage"])
        if instrument is None or not 1 <= leverage <= 125:
            return self._error(400, -4028, f"Leverage {leverage} is not valid")
        self.futures.leverage[instrument.symbol] = leverage
        return Reply(200, {"leverage": leverage, "maxNotionalValue": "50000000", "symbol": params["symbol"]})

    def _set_margin_type(self, request: Request) -> Reply:
        """POST /fapi/v1/marginType (USDⓈ-M "Change Margin Type"): a symbol starts in cross
        margin; asking for the type it has answers -4046 "No need to change margin type.", and
        the type cannot change while the symbol has open orders (-4047) or a position (-4048)."""
        params = _form(request)
        instrument = self._instrument(self.futures, params.get("symbol"))
        wanted = {"ISOLATED": "isolated", "CROSSED": "cross"}.get(params.get("marginType", ""))
        if instrument is None:
            return self._error(400, -1121, "Invalid symbol.")
        if wanted is None:
            return self._error(400, -1116, "Invalid marginType.")
        if self.futures.margin_mode_of(instrument.symbol) == wanted:
            return self._error(400, -4046, "No need to change margin type.")
        if any(o.status == "open" and o.instrument.symbol == instrument.symbol for o in self.futures.orders.values()):
            return self._error(400, -4047, "Margin type cannot be changed if there exists open orders.")
        if self.futures.position(instrument.symbol)[0]:
            return self._error(400, -4048, "Margin type cannot be changed if there exists position.")
        self.futures.margin_mode[instrument.symbol] = wanted
        return Reply(200, {"code": 200, "msg": "success"})


# -- Gate API v4: spot and USDT-settled futures -------------------------------------------


@dataclass
class PriceOrder(StopOrder):
    """A Gate price-triggered order: it triggers when the last price is ``rule`` (">=" or
    "<=") ``trigger`` and lapses ``expiration`` seconds after it was made (0: never). Lists
    show ``client_id`` as its text (spot ``trigger.text``, futures ``initial.text``); the
    order it places carries ``placed_text``."""

    rule: str = "<="
    expiration: int = 0
    time_in_force: str = "gtc"
    price_type: int = 0  # futures: 0 last, 1 mark, 2 index price (the loopback has one price)
    placed_text: str = "api"
    reason: str = ""  # how it finished, when it failed
    visible_at: float = 0.0  # monotonic time from which queries see it (as ``BookOrder``)

    def reached(self, price: Decimal) -> bool:
        return price >= self.trigger if self.rule == ">=" else price <= self.trigger

    def lapsed(self, now_ms: int) -> bool:
        return bool(self.expiration) and now_ms >= self.created_ms + self.expiration * 1000


class _GatePriceOrders(_VenueStops):
    """Price-triggered ("auto") orders as Gate API v4 runs them, for ``Gate``.

    Spot (gateapi-python ``docs/SpotApi.md``, ``SpotPriceTriggeredOrder.md``,
    ``SpotPriceTrigger.md``, ``SpotPricePutOrder.md``): ``POST /spot/price_orders`` with
    ``trigger`` {price, rule ">=" or "<=", expiration}, ``put`` {type, side, price, amount,
    account, time_in_force, text} and ``market``; ``GET /spot/price_orders`` lists them by
    ``status`` ("open" or "finished") with ``market``, ``limit`` (100) and ``offset``;
    ``GET``/``DELETE /spot/price_orders/{order_id}``; ``DELETE /spot/price_orders`` cancels
    every open one. Statuses: open, cancelled, finish (``fired_order_id``: "ID of the newly
    created order on condition triggered"), failed, expired. Futures (``FuturesApi.md``,
    ``FuturesPriceTriggeredOrder.md``, ``FuturesInitialOrder.md``, ``FuturesPriceTrigger.md``):
    the same under ``/futures/usdt/price_orders`` with ``initial`` {contract, size (signed
    contracts), price ("0": market), tif, reduce_only, text} and ``trigger`` {strategy_type,
    price_type, price, rule 1 (>=) or 2 (<=), expiration}; status open or finished, with
    ``finish_as`` succeeded, cancelled, failed or expired, and ``trade_id`` the order placed.

    The inconvenient parts, as documented: a price order is found by the id Gate returned
    ("ID returned when order is successfully created", get_spot_price_triggered_order), never
    by a text, and creating one answers that id alone (``TriggerOrderResponse``); lists take no
    time window, newest first. Gate's models name no client text of a spot price order: ccxt
    sends it as ``trigger.text`` and reads it back from there (ccxt ``gate.py``,
    create_order_request and parse_order, since ccxt#28170), so it is kept there; ``put.text``
    and ``initial.text`` are "the source of the order" placed on trigger ("api" unless given)
    and become that order's ``text``: the order a futures stop places carries the client
    text, the one a spot stop places does not. "The conditional order does not occupy your
    balance until it is triggered" (Gate API v4, "Create price-triggered order"): a spot sell
    that then finds too little base fails (``failed``), as does a reduce-only futures order
    with no position left to reduce.
    """

    API: str
    CONTRACT_SIZE: Decimal
    # the longest spot ``trigger.expiration`` taken: Gate requires one (SpotPriceTrigger.md)
    # and refuses one out of its range ("invalid argument: trigger.expiration invalid range",
    # in ccxt gate.py's handle_errors); 30 days is accepted (gateapi-python#144)
    SPOT_EXPIRATION_MAX_S = 30 * 86_400

    def _route_price_orders(self) -> None:
        self.stops: dict[int, StopOrder] = {}
        self._price_order_ids = iter(range(1, 10**9))  # Gate numbers auto orders apart from orders
        for prefix, book, create in (
            (f"{self.API}/spot", self.spot, self._spot_price_create),
            (f"{self.API}/futures/usdt", self.futures, self._futures_price_create),
        ):
            self.route("POST", f"{prefix}/price_orders", self._signed(create))
            self.route("GET", f"{prefix}/price_orders", self._signed(self._price_list(book)))
            self.route("DELETE", f"{prefix}/price_orders", self._signed(self._price_cancel_all(book)))
            self.route("GET", f"{prefix}/price_orders/{{order_id}}", self._signed(self._price_get(book)))
            self.route("DELETE", f"{prefix}/price_orders/{{order_id}}", self._signed(self._price_cancel(book)))

    def trigger_stops(self, symbol: str) -> None:
        self._lapse()
        super().trigger_stops(symbol)

    def _lapse(self) -> None:
        """Expire the open price orders whose ``expiration`` ran out."""
        now = self.spot.now_ms()
        for stop in self.stops.values():
            if stop.status == "open" and stop.lapsed(now):
                stop.status, stop.updated_ms = "expired", stop.created_ms + stop.expiration * 1000

    def _release(self, book: Book, stop: StopOrder) -> None:
        if _place_on_trigger(book, stop, stop.placed_text) is None:
            stop.reason = "the order could not be placed: not enough balance, or no position left to reduce"

    # -- creating -----------------------------------------------------------------------
    def _spot_price_create(self, request: Request) -> Reply:
        body = json.loads(request.body or b"{}")
        trigger, put = body.get("trigger") or {}, body.get("put") or {}
        instrument = self._instrument(self.spot, body.get("market"))
        if instrument is None:
            return self._error(400, "INVALID_CURRENCY_PAIR", "invalid currency pair")
        if trigger.get("rule") not in (">=", "<="):
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: Trigger.rule")
        expiration = trigger.get("expiration")
        if not isinstance(expiration, int) or not 0 < expiration <= self.SPOT_EXPIRATION_MAX_S:
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: trigger.expiration invalid range")
        # the placed order is a limit order ("Only limit orders are supported as the triggered
        # order type", Gate API v4, "Create price-triggered order"; a market put.type is refused:
        # gateapi-python#155, gateapi-nodejs#21); the account is "normal" (gateapi-python#159)
        for name, allowed in (
            ("type", ("limit",)),
            ("account", ("normal",)),
            ("side", ("buy", "sell")),
            ("time_in_force", ("gtc", "ioc")),
        ):
            if put.get(name, allowed[0]) not in allowed:
                return self._error(400, "INVALID_PARAM_VALUE", f"invalid argument: put.{name}")
        price = Decimal(str(put["price"]))
        failure = self._limit_failure(self.spot, instrument, put, price)
        if failure is not None:
            return failure
        now = self.spot.now_ms()
        return self._accept(
            self.spot,
            PriceOrder(
                0,
                trigger.get("text", ""),
                instrument,
                put["side"],
                Decimal(str(put["amount"])),
                Decimal(str(trigger["price"])),
                price,
                False,
                now,
                updated_ms=now,
                rule=trigger["rule"],
                expiration=expiration,
                time_in_force=put.get("time_in_force", "gtc"),
                placed_text=put.get("text") or "api",
            ),
        )

    def _futures_price_create(self, request: Request) -> Reply:
        body = json.loads(request.body or b"{}")
        initial, trigger = body.get("initial") or {}, body.get("trigger") or {}
        instrument = self._instrument(self.futures, initial.get("contract"))
        if instrument is None:
            return self._error(400, "INVALID_CURRENCY_PAIR", "invalid currency pair")
        if trigger.get("rule") not in (1, 2):
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: Trigger.rule")
        if trigger.get("strategy_type", 0) != 0:  # "Only `0` is supported currently"
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: trigger.strategy_type")
        size, price = initial.get("size"), Decimal(str(initial.get("price", "0")))
        if not isinstance(size, int) or size == 0:  # closing by size 0 and ``close`` is not modelled
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: initial.size")
        tif = initial.get("tif", "gtc")
        if not price and tif != "ioc":  # "If using market price, only `ioc` is supported"
            return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: initial.tif")
        failure = self._limit_failure(self.futures, instrument, {"size": size}, price or None)
        if failure is not None:
            return failure
        now, text = self.futures.now_ms(), initial.get("text") or "api"
        return self._accept(
            self.futures,
            PriceOrder(
                0,
                text,
                instrument,
                "buy" if size > 0 else "sell",
                abs(size) * self.CONTRACT_SIZE,
                Decimal(str(trigger["price"])),
                price or None,
                bool(initial.get("reduce_only")),
                now,
                updated_ms=now,
                rule=">=" if trigger["rule"] == 1 else "<=",
                expiration=int(trigger.get("expiration") or 0),
                time_in_force=tif,
                price_type=int(trigger.get("price_type", 0)),
                placed_text=text,
            ),
        )

    def _accept(self, book: Book, stop: PriceOrder) -> Reply:
        """Rest ``stop`` unless its trigger is on the wrong side of the last price ("When using
        '<=', the trigger price should be less than the current market price", Gate API v4,
        "Create price-triggered order"; the labels are those of ccxt gate.py's error table)."""
        with book.lock:
            last = book.prices[stop.instrument.symbol]
            if stop.rule == "<=" and stop.trigger >= last:
                return self._error(
                    400, "AUTO_TRIGGER_PRICE_LESS_LAST", "invalid argument: Trigger.Price must < last_price"
                )
            if stop.rule == ">=" and stop.trigger <= last:
                return self._error(
                    400, "AUTO_TRIGGER_PRICE_GREATE_LAST", "invalid argument: Trigger.Price must > last_price"
                )
            stop = replace(stop, id=next(self._price_order_ids), visible_at=time.monotonic() + book.visibility_delay)
            self.stops[stop.id] = stop
        return Reply(201, {"id": stop.id})

    # -- reading and cancelling ------------------------------------------------------------
    def _price_order(self, book: Book, order_id: str, *, visible: bool = True) -> PriceOrder | None:
        """By the id Gate returned; a text finds nothing."""
        stop = self.stops.get(int(order_id)) if order_id.isdigit() else None
        if stop is None or stop.instrument.symbol not in book.instruments:
            return None
        return stop if not visible or time.monotonic() >= stop.visible_at else None

    def _price_list(self, book: Book) -> Handler:
        def list_price_orders(request: Request) -> Reply:
            self._lapse()
            q = request.query
            wanted = q.get("status")
            if wanted not in ("open", "finished"):
                return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: status")
            market = q.get("contract" if book is self.futures else "market")
            rows = [
                s
                for s in reversed(self.stops.values())
                if s.instrument.symbol in book.instruments
                and market in (None, self.market_id(s.instrument.symbol))
                and time.monotonic() >= s.visible_at
                and (s.status == "open") == (wanted == "open")
            ]
            offset = int(q.get("offset", 0))
            return Reply(200, [self._price_order_json(s) for s in rows[offset : offset + int(q.get("limit", 100))]])

        return list_price_orders

    def _price_get(self, book: Book) -> Handler:
        def get(request: Request) -> Reply:
            self._lapse()
            stop = self._price_order(book, request.path_params["order_id"])
            if stop is None:
                return self._error(404, "ORDER_NOT_FOUND", "Order not found")
            return Reply(200, self._price_order_json(stop))

        return get

    def _price_cancel(self, book: Book) -> Handler:
        def cancel(request: Request) -> Reply:
            self._lapse()
            with book.lock:
                stop = self._price_order(book, request.path_params["order_id"], visible=False)
                if stop is None or stop.status != "open":
                    return self._error(404, "ORDER_NOT_FOUND", "Order not found")
                stop.status, stop.updated_ms = "canceled", book.now_ms()
            return Reply(200, self._price_order_json(stop))

        return cancel

    def _price_cancel_all(self, book: Book) -> Handler:
        def cancel_all(request: Request) -> Reply:
            self._lapse()
            market = request.query.get("contract" if book is self.futures else "market")
            with book.lock:
                cancelled = [
                    s
                    for s in self.stops.values()
                    if s.status == "open"
                    and s.instrument.symbol in book.instruments
                    and market in (None, self.market_id(s.instrument.symbol))
                ]
                for stop in cancelled:
                    stop.status, stop.updated_ms = "canceled", book.now_ms()
            return Reply(200, [self._price_order_json(s) for s in cancelled])

        return cancel_all

    def _price_order_json(self, stop: PriceOrder) -> dict[str, Any]:
        placed = stop.actual.id if stop.actual is not None else 0
        finished = stop.status != "open"
        if stop.instrument.swap:
            contracts = int(Decimal(self._contracts_of(stop.amount)))
            body = {
                "id": stop.id,
                "user": 1,
                "create_time": stop.created_ms / 1000,
                "finish_time": stop.updated_ms / 1000 if finished else 0,
                "trade_id": placed,
                "status": "finished" if finished else "open",
                "reason": stop.reason,
                "initial": {
                    "contract": self.market_id(stop.instrument.symbol),
                    "size": contracts if stop.side == "buy" else -contracts,
                    "price": _s(stop.limit or Decimal(0)),
                    "tif": stop.time_in_force,
                    "text": stop.client_id,
                    "iceberg": 0,
                    "is_close": False,
                    "reduce_only": stop.reduce_only,
                    "is_reduce_only": stop.reduce_only,
                    "auto_size": "",
                },
                "trigger": {
                    "strategy_type": 0,
                    "price_type": stop.price_type,
                    "price": _s(stop.trigger),
                    "rule": 1 if stop.rule == ">=" else 2,
                    "expiration": stop.expiration,
                },
                "is_stop_order": False,
                "stop_trigger": {"rule": 0, "trigger_price": "", "order_price": ""},
                "me_order_id": 0,
                "order_type": "",
            }
            if finished:
                body["finish_as"] = {
                    "triggered": "succeeded",
                    "canceled": "cancelled",
                    "rejected": "failed",
                    "expired": "expired",
                }[stop.status]
            return body
        trigger = {"price": _s(stop.trigger), "rule": stop.rule, "expiration": stop.expiration}
        if stop.client_id:
            trigger["text"] = stop.client_id
        return {
            "id": stop.id,
            "user": 1,
            "market": self.market_id(stop.instrument.symbol),
            "ctime": stop.created_ms // 1000,
            "ftime": stop.updated_ms // 1000 if finished else 0,
            "fired_order_id": placed,
            "reason": stop.reason,
            "status": {
                "open": "open",
                "triggered": "finish",
                "canceled": "cancelled",
                "rejected": "failed",
                "expired": "expired",
            }[stop.status],
            "trigger": trigger,
            "put": {
                "type": "limit",
                "side": stop.side,
                "price": _s(stop.limit or Decimal(0)),
                "amount": _s(stop.amount),
                "account": "normal",
                "time_in_force": stop.time_in_force,
                "auto_borrow": False,
                "auto_repay": False,
                "text": stop.placed_text,
            },
        }


class Gate(_GatePriceOrders, LoopbackExchange):
    """Gate spot and USDT perpetual trading for one account, API v4, signatures checked.

    Signed requests carry KEY, Timestamp and SIGN headers; SIGN is the hex HMAC-SHA512, keyed
    by the secret, of "METHOD\\n/api/v4/PATH\\nQUERY\\nhex SHA512(body)\\nTIMESTAMP". Failures
    answer Gate's labels: INVALID_KEY, INVALID_SIGNATURE, REQUEST_EXPIRED (401),
    BALANCE_NOT_ENOUGH / INSUFFICIENT_AVAILABLE, ORDER_NOT_FOUND, INVALID_PRECISION /
    AMOUNT_TOO_LITTLE / INVALID_PARAM_VALUE / PRICE_TOO_DEVIATED (the market's limits).
    Perpetual contracts are ``CONTRACT_SIZE`` base units each; spot market buys are sized in
    quote currency.

    Strict as Gate is: ``text`` is not unique (``docs/Order.md`` states only its format), so
    a reused ``text`` is simply another order; an order is found by its ``text`` only while
    it is in the book, on futures also "within 60 seconds after the end of the order. After
    that, only order ID is accepted" (``docs/FuturesApi.md``, get_futures_order), on spot
    "Only order ID can be used after the order is finished" (``docs/SpotApi.md``, get_order);
    spot trade history covers 7 days from ``from`` (or up to ``to``, or now) and at most 30
    days between them (``docs/SpotApi.md``, list_my_trades). ``visibility_delay`` as on
    ``Book`` (0 unless a test asks: Gate documents no delay). Stops are price-triggered orders
    (``_GatePriceOrders``), which ``set_price`` triggers.
    """

    TEXT_LOOKUP_AFTER_FINISH_S = {"spot": 0, "futures": 60}
    SPOT_TRADES_DEFAULT_S, SPOT_TRADES_MAX_S = 7 * 86_400, 30 * 86_400

    API = "/api/v4"
    CONTRACT_SIZE = Decimal("0.0001")
    MAX_SKEW_S = 60

    def __init__(
        self,
        api_key: str,
        secret: str,
        balances: Mapping[str, Any],
        *,
        futures_balances: Mapping[str, Any] | None = None,
        markets: tuple[str, ...] = ("BTC/USDT",),
        prices: Mapping[str, Any] | None = None,
        fee: Any = "0.002",
        candles: Mapping[str, pd.DataFrame] | None = None,
        clock: Callable[[], float] = time.time,
        visibility_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.api_key, self.secret, self.clock = api_key, secret, clock
        self.markets, self.candles = tuple(markets), dict(candles or {})
        # symbols that do not trade: spot ``trade_status`` "untradable", a contract ``in_delisting``
        # (``docs/SpotApi.md`` CurrencyPair, ``docs/FuturesApi.md`` Contract)
        self.halted: set[str] = set()
        prices = dict(prices or {symbol: "30000" for symbol in markets})
        self.spot = Book([Instrument(s, *s.split("/")) for s in markets], balances, fee=fee, prices=prices, clock=clock)
        self.futures = Book(
            [
                Instrument(f"{s}:{s.split('/')[1]}", *s.split("/"), swap=True, contract_size=self.CONTRACT_SIZE)
                for s in markets
            ],
            futures_balances or {"USDT": "0"},
            fee=fee,
            clock=clock,
            prices={f"{s}:{s.split('/')[1]}": p for s, p in prices.items()},
        )
        self.spot.visibility_delay = self.futures.visibility_delay = visibility_delay
        self.futures.maintenance_rate = Decimal("0.005")  # the contracts' maintenance_rate
        api, fut = self.API, f"{self.API}/futures/usdt"
        self.route("GET", f"{api}/spot/time", lambda request: Reply(200, {"server_time": int(self.clock() * 1000)}))
        self.route("GET", f"{api}/spot/currency_pairs", self._currency_pairs)
        self.route("GET", f"{api}/margin/currency_pairs", lambda request: Reply(200, []))
        self.route("GET", f"{fut}/contracts", self._contracts)
        self.route("GET", f"{api}/spot/candlesticks", self._candles(futures=False))
        self.route("GET", f"{fut}/candlesticks", self._candles(futures=True))
        self.route("GET", f"{api}/spot/accounts", self._signed(self._spot_accounts))
        self.route("GET", f"{fut}/accounts", self._signed(self._futures_account))
        self.route("GET", f"{fut}/positions", self._signed(self._positions))
        self.route("POST", f"{fut}/positions/{{contract}}/leverage", self._signed(self._set_leverage))
        for prefix, book in ((f"{api}/spot", self.spot), (fut, self.futures)):
            self.route("POST", f"{prefix}/orders", self._signed(self._create(book)))
            self.route("GET", f"{prefix}/orders", self._signed(self._list_orders(book)))
            self.route("GET", f"{prefix}/orders/{{order_id}}", self._signed(self._get(book)))
            self.route("DELETE", f"{prefix}/orders/{{order_id}}", self._signed(self._cancel(book)))
        self.route("GET", f"{fut}/orders_timerange", self._signed(self._orders_timerange))
        self.route("GET", f"{api}/spot/open_orders", self._signed(self._spot_open_orders))
        self.route("GET", f"{api}/spot/my_trades", self._signed(self._trades(self.spot)))
        self.route("GET", f"{fut}/my_trades_timerange", self._signed(self._trades(self.futures)))
        self.route("GET", f"{fut}/account_book", self._signed(self._account_book))
        self._route_price_orders()

    def set_price(self, symbol: str, price: Any) -> None:
        """The spot symbol's price, for both its spot market and its perpetual; price orders it reaches trigger."""
        self.spot.set_price(symbol, price)
        self.futures.set_price(f"{symbol}:{symbol.split('/')[1]}", price)
        self.trigger_stops(symbol)
        # the order Gate's liquidation engine places carries the reserved text "liquidation"
        # (docs/FuturesApi.md, FuturesOrder.text)
        self.futures.liquidate(f"{symbol}:{symbol.split('/')[1]}", "liquidation")

    def _account_book(self, request: Request) -> Reply:
        """Futures account book, ``GET /futures/{settle}/account_book`` (docs/FuturesApi.md,
        list_futures_account_book): ``contract`` and ``type`` optional filters, ``from``/``to``
        in seconds, ``limit`` 1 to 1000 (default 100), ``offset``; newest first. Only ``fund``
        entries (funding) are booked here."""
        q = request.query
        limit, offset = int(q.get("limit", 100)), int(q.get("offset", 0))
        if not 1 <= limit <= 1000:
            return self._error(400, "INVALID_PARAM_VALUE", "limit must be between 1 and 1000")
        if q.get("type", "fund") != "fund":
            return Reply(200, [])
        instrument = self._instrument(self.futures, q["contract"]) if "contract" in q else None
        if "contract" in q and instrument is None:
            return self._error(400, "CONTRACT_NOT_FOUND", f"contract {q['contract']} not found")
        start, end = float(q.get("from", 0)), float(q.get("to", 10**12))
        with self.futures.lock:
            rows = [
                {
                    "time": b.time_ms / 1000,
                    "change": _s(b.amount),
                    "balance": _s(b.balance),
                    "type": "fund",
                    "text": self.market_id(b.symbol),
                    "contract": self.market_id(b.symbol),
                    "trade_id": "",
                    "id": str(b.id),
                }
                for b in reversed(self.futures.funding)
                if start <= b.time_ms / 1000 <= end and (instrument is None or b.symbol == instrument.symbol)
            ]
        return Reply(200, rows[offset : offset + limit])

    def api_urls(self) -> dict[str, Any]:
        """ccxt's ``urls["api"]`` for ``ccxt.gate``, pointed at this server."""
        import ccxt

        return self._rewrite(ccxt.gate().urls["api"])

    @staticmethod
    def market_id(symbol: str) -> str:
        return symbol.split(":")[0].replace("/", "_")

    @staticmethod
    def _error(status: int, label: str, message: str) -> Reply:
        return Reply(status, {"label": label, "message": message})

    def _signed(self, handler: Handler) -> Handler:
        def verify(request: Request) -> Reply:
            if request.headers.get("KEY") != self.api_key:
                return self._error(401, "INVALID_KEY", "Invalid key provided")
            stamp = request.headers.get("Timestamp", "0")
            payload = "\n".join(
                [
                    request.method,
                    request.path,
                    unquote(request.raw_query),
                    hashlib.sha512(request.body).hexdigest(),
                    stamp,
                ]
            )
            expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
            if not hmac.compare_digest(request.headers.get("SIGN", ""), expected):
                return self._error(401, "INVALID_SIGNATURE", "Signature mismatch")
            if abs(float(stamp) - self.clock()) > self.MAX_SKEW_S:
                return self._error(
                    401, "REQUEST_EXPIRED", f"gap between request Timestamp and server time exceeds {self.MAX_SKEW_S}"
                )
            return handler(request)

        return verify

    def _currency_pairs(self, request: Request) -> Reply:
        return Reply(
            200,
            [
                {
                    "id": self.market_id(s),
                    "base": s.split("/")[0],
                    "quote": s.split("/")[1],
                    "fee": "0.2",
                    "min_base_amount": "0.0001",
                    "min_quote_amount": "3",
                    "amount_precision": 4,
                    "precision": 2,
                    "trade_status": "tradable" if s not in self.halted else "untradable",
                    "sell_start": 0,
                    "buy_start": 0,
                }
                for s in self.markets
            ],
        )

    def _contracts(self, request: Request) -> Reply:
        return Reply(
            200,
            [
                {
                    "name": self.market_id(s),
                    "type": "direct",
                    "quanto_multiplier": _s(self.CONTRACT_SIZE),
                    "leverage_min": "1",
                    "leverage_max": "100",
                    "maintenance_rate": "0.005",
                    "mark_type": "index",
                    "mark_price": _s(self.futures.prices[f"{s}:{s.split('/')[1]}"]),
                    "order_price_round": "0.1",
                    "mark_price_round": "0.01",
                    "order_price_deviate": "0.5",
                    "order_size_min": 1,
                    "order_size_max": 1000000,
                    "maker_fee_rate": "0.0002",
                    "taker_fee_rate": "0.0005",
                    "in_delisting": s in self.halted,
                    "status": "delisting" if s in self.halted else "trading",
                    "enable_decimal": False,
                }
                for s in self.markets
            ],
        )

    def _candles(self, futures: bool) -> Handler:
        from ccxt.base.exchange import Exchange

        def candles(request: Request) -> Reply:
            q = request.query
            market_id = q.get("contract" if futures else "currency_pair")
            symbol = next((s for s in self.candles if self.market_id(s) == market_id), None)
            if symbol is None:
                return self._error(400, "INVALID_CURRENCY_PAIR", f"invalid currency pair {market_id}")
            frame = self.served_candles(symbol, self.clock())
            if q.get("interval") != frame.attrs["timeframe"]:
                return self._error(400, "INVALID_PARAM_VALUE", "invalid argument: interval")
            opens = frame.index.as_unit("s").asi8
            visible = opens <= self.clock()
            if "from" in q:
                visible &= opens >= int(q["from"])
            if "to" in q:
                visible &= opens <= int(q["to"])
            page = frame[visible]
            page = page.head(int(q.get("limit", 100))) if "from" in q else page.tail(int(q.get("limit", 100)))
            step = Exchange.parse_timeframe(frame.attrs["timeframe"])
            rows = []
            for opened, candle in zip(page.index.as_unit("s").asi8, page.itertuples(index=False)):
                closed = "true" if opened + step <= self.clock() else "false"
                o, h, low, c, v = forming_values(candle, opened, step, self.clock())
                if futures:
                    rows.append(
                        {
                            "t": int(opened),
                            "v": int(v),
                            "c": f"{c:.8f}",
                            "h": f"{h:.8f}",
                            "l": f"{low:.8f}",
                            "o": f"{o:.8f}",
                            "sum": f"{v * c:.8f}",
                        }
                    )
                else:
                    rows.append(
                        [
                            str(int(opened)),
                            f"{v * c:.8f}",
                            f"{c:.8f}",
                            f"{h:.8f}",
                            f"{low:.8f}",
                            f"{o:.8f}",
                            f"{v:.8f}",
                            closed,
                        ]
                    )
            return Reply(200, rows)

        return candles

    def _instrument(self, book: Book, market_id: str | None) -> Instrument | None:
        return next((i for i in book.instruments.values() if self.market_id(i.symbol) == market_id), None)

    def _contracts_of(self, amount: Decimal) -> str:
        return _s(amount / self.CONTRACT_SIZE)

    def _order_json(self, order: BookOrder, book: Book) -> dict[str, Any]:
        finish = {"filled": "filled", "canceled": "cancelled", "expired": "ioc"}.get(order.status)
        if book is self.futures:
            sign = 1 if order.side == "buy" else -1
            return {
                "id": order.id,
                "user": 1,
                "contract": self.market_id(order.instrument.symbol),
                "create_time": order.created_ms / 1000,
                "finish_time": order.updated_ms / 1000 if finish else None,
                "finish_as": finish or "_new",
                "status": "finished" if finish else "open",
                "size": sign * int(Decimal(self._contracts_of(order.amount))),
                "left": sign * int(Decimal(self._contracts_of(order.remaining))),
                "iceberg": 0,
                "price": _s(order.price or Decimal(0)),
                "fill_price": _s(order.average),
                "is_close": False,
                "is_reduce_only": order.reduce_only,
                "is_liq": False,
                "tif": "gtc" if order.type == "limit" else "ioc",
                "text": order.client_id,
                "tkfr": "0.0005",
                "mkfr": "0.0002",
                "refu": 0,
                "stp_act": "-",
                "amend_text": "-",
            }
        market_buy = order.type == "market" and order.side == "buy"
        amount = order.amount * book.prices[order.instrument.symbol] if market_buy else order.amount
        left = amount - order.cost if market_buy else order.remaining
        return {
            "id": str(order.id),
            "text": order.client_id,
            "amend_text": "-",
            "create_time": str(order.created_ms // 1000),
            "update_time": str(order.updated_ms // 1000),
            "create_time_ms": order.created_ms,
            "update_time_ms": order.updated_ms,
            "status": "open" if order.status == "open" else ("cancelled" if order.status == "canceled" else "closed"),
            "currency_pair": self.market_id(order.instrument.symbol),
            "type": order.type,
            "account": "spot",
            "side": order.side,
            "amount": _s(amount),
            "price": _s(order.price or Decimal(0)),
            "time_in_force": "gtc" if order.type == "limit" else "ioc",
            "iceberg": "0",
            "left": _s(left),
            "filled_amount": _s(order.filled),
            "fill_price": _s(order.cost),
            "filled_total": _s(order.cost),
            "avg_deal_price": _s(order.average),
            "fee": _s(order.fee),
            "fee_currency": order.instrument.base if order.side == "buy" else order.instrument.quote,
            "point_fee": "0",
            "gt_fee": "0",
            "gt_maker_fee": "0",
            "gt_taker_fee": "0",
            "gt_discount": False,
            "rebated_fee": "0",
            "rebated_fee_currency": order.instrument.quote,
            "finish_as": finish or "open",
        }

    def _create(self, book: Book) -> Handler:
        futures = book is self.futures

        def create(request: Request) -> Reply:
            body = json.loads(request.body or b"{}")
            instrument = self._instrument(book, body.get("contract" if futures else "currency_pair"))
            if instrument is None:
                return self._error(400, "INVALID_CURRENCY_PAIR", "invalid currency pair")
            price = Decimal(str(body.get("price") or 0)) or None
            if futures:
                size = Decimal(str(body["size"]))
                side, amount = ("buy" if size > 0 else "sell"), abs(size) * self.CONTRACT_SIZE
                type = "market" if price is None else "limit"
            else:
                side, type, amount = body["side"], body.get("type", "limit"), Decimal(body["amount"])
                if type == "market" and side == "buy":  # spot market buys spend a quote amount
                    amount = (amount / book.prices[instrument.symbol]).quantize(Decimal("1e-8"), ROUND_DOWN)
            failure = self._limit_failure(book, instrument, body, price)
            if failure is not None:
                return failure
            try:  # no uniqueness check on ``text``
                order = book.place(
                    instrument,
                    side,
                    type,
                    amount,
                    price if type == "limit" else None,
                    body.get("text", ""),
                    bool(body.get("reduce_only")),
                )
            except Reject:
                return (
                    self._error(400, "INSUFFICIENT_AVAILABLE", "insufficient available balance")
                    if futures
                    else self._error(400, "BALANCE_NOT_ENOUGH", "Not enough balance")
                )
            return Reply(201, self._order_json(order, book))

        return create

    def _limit_failure(
        self, book: Book, instrument: Instrument, body: Mapping[str, Any], price: Decimal | None
    ) -> Reply | None:
        """The market's limits as ``_currency_pairs``/``_contracts`` publish them."""
        reference = book.prices[instrument.symbol]
        if book is self.futures:
            if Decimal(str(body["size"])) % 1:
                return self._error(400, "INVALID_PARAM_VALUE", "size must be a whole number of contracts")
            if price is not None and (price % Decimal("0.1") or abs(price - reference) > reference * Decimal("0.5")):
                return self._error(
                    400,
                    "PRICE_TOO_DEVIATED" if price % Decimal("0.1") == 0 else "INVALID_PRECISION",
                    f"price {price} is off the tick 0.1 or deviates over 50% from the mark",
                )
            return None
        amount = Decimal(body["amount"])
        if price is not None and price.as_tuple().exponent < -2:
            return self._error(400, "INVALID_PRECISION", f"price {price} has more than 2 decimals")
        market_buy = body.get("type") == "market" and body["side"] == "buy"
        if not market_buy and amount.as_tuple().exponent < -4:
            return self._error(400, "INVALID_PRECISION", f"amount {amount} has more than 4 decimals")
        if not market_buy and amount < Decimal("0.0001"):
            return self._error(400, "AMOUNT_TOO_LITTLE", f"amount {amount} is below the minimum 0.0001")
        total = amount if market_buy else amount * (price or reference)
        if total < 3:
            return self._error(
                400,
                "INVALID_PARAM_VALUE",
                f"Your order size {total} {instrument.quote} is too small. The minimum is 3 {instrument.quote}",
            )
        return None

    def _find(self, book: Book, order_id: str, *, visible: bool = True) -> BookOrder | None:
        """By id; by ``text`` only while the order is open or just finished (see the class)."""
        if order_id.startswith("t-"):
            order = book.by_client_id(order_id, visible=visible)
            after = self.TEXT_LOOKUP_AFTER_FINISH_S["futures" if book is self.futures else "spot"]
            if order is not None and order.status != "open" and book.now_ms() - order.updated_ms > after * 1000:
                return None
            return order
        order = book.orders.get(int(order_id)) if order_id.isdigit() else None
        return order if order is not None and (not visible or book.visible(order)) else None

    def _get(self, book: Book) -> Handler:
        def get(request: Request) -> Reply:
            order = self._find(book, request.path_params["order_id"])
            if order is None:
                return self._error(404, "ORDER_NOT_FOUND", "Order not found")
            return Reply(200, self._order_json(order, book))

        return get

    def _cancel(self, book: Book) -> Handler:
        def cancel(request: Request) -> Reply:
            order = self._find(book, request.path_params["order_id"], visible=False)
            try:
                book.cancel(order) if order is not None else None
            except Reject:
                order = None
            if order is None:
                return self._error(404, "ORDER_NOT_FOUND", "Order not found")
            return Reply(200, self._order_json(order, book))

        return cancel

    def _list_orders(self, book: Book) -> Handler:
        def list_orders(request: Request) -> Reply:
            q = request.query
            instrument = self._instrument(book, q.get("contract", q.get("currency_pair")))
            wanted = q.get("status", "open")
            start, end = float(q.get("from", 0)), float(q.get("to", 10**12))  # finished: by their end time
            rows = [
                self._order_json(o, book)
                for o in book.orders.values()
                if o.instrument is instrument
                and (o.status == "open") == (wanted == "open")
                and book.visible(o)
                and (wanted == "open" or start <= o.updated_ms / 1000 <= end)
            ]
            return Reply(200, rows[: int(q.get("limit", 100))])

        return list_orders

    def _orders_timerange(self, request: Request) -> Reply:
        """GET /futures/usdt/orders_timerange ("List Futures Orders By Time Range",
        ``docs/FuturesApi.md``): the contract's orders created between ``from`` and ``to`` (seconds)."""
        q = request.query
        instrument = self._instrument(self.futures, q.get("contract"))
        start, end = float(q.get("from", 0)), float(q.get("to", 10**12))
        rows = [
            self._order_json(o, self.futures)
            for o in self.futures.orders.values()
            if o.instrument is instrument and self.futures.visible(o) and start <= o.created_ms / 1000 <= end
        ]
        return Reply(200, rows[: int(q.get("limit", 100))])

    def _spot_open_orders(self, request: Request) -> Reply:
        """GET /spot/open_orders: open orders grouped by currency pair."""
        pairs: dict[str, list] = {}
        for order in self.spot.orders.values():
            if order.status == "open" and self.spot.visible(order):
                pairs.setdefault(self.market_id(order.instrument.symbol), []).append(self._order_json(order, self.spot))
        wanted = request.query.get("currency_pair")
        return Reply(
            200,
            [
                {"currency_pair": pair, "total": len(orders), "orders": orders}
                for pair, orders in pairs.items()
                if wanted in (None, pair)
            ],
        )

    def _trades(self, book: Book) -> Handler:
        futures = book is self.futures

        def trades(request: Request) -> Reply:
            q = request.query
            instrument = self._instrument(book, q.get("contract", q.get("currency_pair")))
            start, end = float(q.get("from", 0)), float(q.get("to", 10**12))
            if not futures:
                if "from" in q and "to" in q and end - start > self.SPOT_TRADES_MAX_S:
                    return self._error(400, "INVALID_PARAM_VALUE", "the time range may not exceed 30 days")
                if "to" not in q:
                    end = (
                        start if "from" in q else self.clock() - self.SPOT_TRADES_DEFAULT_S
                    ) + self.SPOT_TRADES_DEFAULT_S
                if "from" not in q:
                    start = end - self.SPOT_TRADES_DEFAULT_S
            rows = []
            for t in book.trades:
                if t.order.instrument is not instrument or not start <= t.time_ms / 1000 <= end or not book.visible(t):
                    continue
                role = "maker" if t.maker else "taker"
                if futures:
                    sign = 1 if t.order.side == "buy" else -1
                    rows.append(
                        {
                            "id": t.id,
                            "create_time": t.time_ms / 1000,
                            "contract": self.market_id(instrument.symbol),
                            "order_id": str(t.order.id),
                            "size": sign * int(Decimal(self._contracts_of(t.amount))),
                            "close_size": 0,
                            "price": _s(t.price),
                            "role": role,
                            "text": t.order.client_id,
                            "fee": _s(t.fee),
                            "point_fee": "0",
                        }
                    )
                else:
                    rows.append(
                        {
                            "id": str(t.id),
                            "create_time": str(t.time_ms // 1000),
                            "create_time_ms": f"{t.time_ms}.000",
                            "currency_pair": self.market_id(instrument.symbol),
                            "side": t.order.side,
                            "role": role,
                            "amount": _s(t.amount),
                            "price": _s(t.price),
                            "order_id": str(t.order.id),
                            "fee": _s(t.fee),
                            "fee_currency": t.fee_asset,
                            "point_fee": "0",
                            "gt_fee": "0",
                            "text": t.order.client_id,
                            "amend_text": "-",
                        }
                    )
            return Reply(200, rows[-int(q.get("limit", 100)) :])

        return trades

    def _spot_accounts(self, request: Request) -> Reply:
        return Reply(
            200,
            [
                {
                    "currency": asset,
                    "available": _s(self.spot.free(asset)),
                    "locked": _s(self.spot.locked(asset)),
                    "update_id": 1,
                }
                for asset in self.spot.balances
            ],
        )

    def _futures_account(self, request: Request) -> Reply:
        """GET /futures/usdt/accounts: ``total`` is "position_margin + order_margin + available",
        without the unrealised PnL, which ``unrealised_pnl`` reports beside it (``docs/FuturesAccount.md``)."""
        wallet = self.futures.balances.get("USDT", Decimal(0))
        return Reply(
            200,
            {
                "user": 1,
                "currency": "USDT",
                "total": _s(wallet),
                "unrealised_pnl": _s(self.futures.unrealized("USDT")),
                "position_margin": _s(self.futures.used_margin("USDT")),
                "order_margin": _s(self.futures.locked("USDT")),
                "available": _s(self.futures.free("USDT")),
                "point": "0",
                "bonus": "0",
                "in_dual_mode": False,
                "enable_evolved_classic": False,
            },
        )

    def _position_json(self, symbol: str) -> dict[str, Any]:
        size, entry = self.futures.position(symbol)
        mark, leverage = self.futures.prices[symbol], self.futures.leverage_of(symbol)
        cross = self.futures.margin_mode_of(symbol) == "cross"
        return {
            "user": 1,
            "contract": self.market_id(symbol),
            "size": int(Decimal(self._contracts_of(size))),
            "leverage": "0" if cross else str(leverage),
            "risk_limit": "1000000",
            "leverage_max": "100",
            "maintenance_rate": "0.005",
            "value": _s(abs(size) * mark),
            "margin": _s(abs(size) * entry / leverage),
            "entry_price": _s(entry),
            "liq_price": "0",
            "mark_price": _s(mark),
            "unrealised_pnl": _s(size * (mark - entry)),
            "realised_pnl": "0",
            "history_pnl": "0",
            "last_close_pnl": "0",
            "realised_point": "0",
            "history_point": "0",
            "adl_ranking": 5,
            "pending_orders": 0,
            "close_order": None,
            "mode": "single",
            "cross_leverage_limit": "0",
            "update_time": int(self.clock()),
            "open_time": int(self.clock()),
        }

    def _positions(self, request: Request) -> Reply:
        return Reply(200, [self._position_json(symbol) for symbol in list(self.futures.positions)])

    def _set_leverage(self, request: Request) -> Reply:
        """POST /futures/usdt/positions/{contract}/leverage: a leverage above 0 is isolated margin
        at that leverage, 0 is cross margin (``cross_leverage_limit`` "valid only when leverage
        is 0", ``docs/FuturesApi.md``, update_position_leverage)."""
        instrument = self._instrument(self.futures, request.path_params["contract"])
        leverage = int(request.query.get("leverage", "0"))
        if instrument is None:
            return self._error(400, "CONTRACT_NOT_FOUND", "contract not found")
        if leverage == 0:
            self.futures.margin_mode[instrument.symbol] = "cross"
            return Reply(200, self._position_json(instrument.symbol))
        if not 1 <= leverage <= 100:
            return self._error(
                400, "LEVERAGE_TOO_HIGH" if leverage > 100 else "LEVERAGE_TOO_LOW", f"leverage {leverage}"
            )
        self.futures.leverage[instrument.symbol] = leverage
        self.futures.margin_mode[instrument.symbol] = "isolated"
        return Reply(200, self._position_json(instrument.symbol))


# -- key permissions: what an API key may do (the vault asks when a key is added or checked) ----


def answer_binance_key_restrictions(
    server: BinanceAccount,
    *,
    withdrawals: bool = False,
    ip_restrict: bool = True,
    spot_trading: bool = True,
    futures: bool = False,
    margin: bool = False,
) -> None:
    """Serve ``GET /sapi/v1/account/apiRestrictions`` on ``server`` (signed, USER_DATA) in Binance's
    format (https://developers.binance.com/docs/wallet/account/api-key-permission): the flags of
    the one key the server knows. Binance lets a key withdraw only with an IP restriction."""

    def restrictions(request: Request) -> Reply:
        answer = {
            "ipRestrict": ip_restrict,
            "createTime": 1698645219000,
            "enableReading": True,
            "enableWithdrawals": withdrawals,
            "enableInternalTransfer": False,
            "enableMargin": margin,
            "enableFutures": futures,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": True,
            "enableSpotAndMarginTrading": spot_trading,
            "enablePortfolioMarginTrading": False,
        }
        if spot_trading:
            answer["tradingAuthorityExpirationTime"] = 1893456000000  # when the trading permission lapses
        return Reply(200, answer)

    server.route("GET", "/sapi/v1/account/apiRestrictions", server._signed(restrictions))


def answer_gate_key_permissions(
    server: Gate, perms: Mapping[str, bool], *, ip_whitelist: tuple[str, ...] = (), account_permission: bool = True
) -> None:
    """Serve Gate APIv4's key information for ``server``'s key, ``perms`` being {name: read_only}:

    - ``GET /account/main_keys`` ("Query All Main Account Key Information"): every key of the main
      account with ``perms`` [{name, read_only}], ``ip_whitelist`` and the key shown as its first 12
      characters then ``*****``; a key without the ``account`` permission gets 403 ``FORBIDDEN``
      "Request API key does not have account permission";
    - ``DELETE /withdrawals/{withdrawal_id}`` (cancel a withdrawal): 403 ``FORBIDDEN`` without the
      ``wallet`` permission, 403 ``READ_ONLY`` "API key is read-only" with it read-only, else (no
      such withdrawal here) 404 ``NOT_FOUND``. Labels from Gate APIv4's error list.
    """

    def main_keys(request: Request) -> Reply:
        if not account_permission:
            return server._error(403, "FORBIDDEN", "Request API key does not have account permission")
        mine = {
            "state": 1,
            "mode": 1,
            "name": "workbench",
            "user_id": 1,
            "currency_pairs": [],
            "perms": [{"name": name, "read_only": read_only} for name, read_only in perms.items()],
            "ip_whitelist": list(ip_whitelist),
            "key": server.api_key[:12] + "*****",
            "created_at": 1753030929,
            "update_at": 1756300567,
            "last_access": 1753030929,
        }
        other = {
            **mine,
            "name": "another key",
            "perms": [{"name": "wallet", "read_only": False}],
            "ip_whitelist": [],
            "key": "zz" + server.api_key[2:12] + "*****",
        }
        return Reply(200, [other, mine])

    def cancel_withdrawal(request: Request) -> Reply:
        if "wallet" not in perms:
            return server._error(403, "FORBIDDEN", "Request API key does not have wallet permission")
        if perms["wallet"]:
            return server._error(403, "READ_ONLY", "API key is read-only")
        return server._error(404, "NOT_FOUND", f"withdrawal {request.path_params['withdrawal_id']} not found")

    server.route("GET", f"{server.API}/account/main_keys", server._signed(main_keys))
    server.route("DELETE", f"{server.API}/withdrawals/{{withdrawal_id}}", server._signed(cancel_withdrawal))


# -- funding-rate history of the perpetuals (public market data) ----------------------------

FUNDING_LISTED = pd.Timestamp("2019-09-25", tz="UTC")  # the perpetuals' onboardDate in Binance._futures_info
FUNDING_UNTIL = pd.Timestamp("2031-01-01", tz="UTC")  # settlements past the clock are never served


def synthetic_funding(
    start: Any = FUNDING_LISTED, stop: Any = FUNDING_UNTIL, *, seed: int = 11, every: str = "8h"
) -> pd.Series:
    """SYNTHETIC funding rates, not any venue's: a seeded random walk around 0.0001 (the venues'
    interest component at a neutral premium) mean-reverting, 8 decimals, kept within ±0.003, at
    every multiple of ``every`` since 1970 (8 h: 00:00, 08:00, 16:00 UTC) in [start, stop)."""
    import numpy as np

    step = pd.Timedelta(every)
    first = pd.Timestamp(start).tz_convert("UTC").ceil(step)
    times = pd.date_range(
        first, pd.Timestamp(stop).tz_convert("UTC") - pd.Timedelta(1, "ns"), freq=step, name="time"
    ).as_unit("ns")
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.00008, len(times))
    rates = np.empty(len(times))
    level = 0.0001
    for i, shock in enumerate(shocks):
        level = 0.0001 + 0.85 * (level - 0.0001) + shock
        rates[i] = level
    series = pd.Series(np.round(np.clip(rates, -0.003, 0.003), 8), index=times, name="funding_rate")
    series.attrs["source"] = f"synthetic (seed {seed}), not market data"
    return series


def _funding_store(
    server: LoopbackExchange,
    symbols: list[str],
    funding: Mapping[str, pd.Series] | None,
) -> dict[str, pd.Series]:
    """The series each perpetual settles: given ones, else a synthetic one seeded by the symbol."""
    import zlib

    store = {symbol: synthetic_funding(seed=zlib.crc32(symbol.encode())) for symbol in symbols}
    for symbol, series in (funding or {}).items():
        store[symbol] = series.sort_index()
    server.funding = store  # type: ignore[attr-defined]  # tests may replace or edit a series
    return store


def _settled(series: pd.Series, now_ms: int) -> tuple[Any, Any]:
    """(times in ms, rates) of the settlements that have happened by ``now_ms``."""
    times = series.index.as_unit("ms").asi8
    done = times <= now_ms
    return times[done], series.to_numpy()[done]


def serve_binance_funding(server: Binance, funding: Mapping[str, pd.Series] | None = None) -> dict[str, pd.Series]:
    """Serve Binance USDⓈ-M ``GET /fapi/v1/fundingRate`` ("Get Funding Rate History",
    https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History)
    for ``server``'s perpetuals ("BTC/USDT:USDT"), from ``funding`` or synthetic series
    (``synthetic_funding``; ``server.funding`` holds them). As the docs say: ``symbol`` optional
    (all perpetuals without it), ``startTime``/``endTime`` in ms, both INCLUSIVE; ``limit``
    "Default 100; max 1000" (else -1130, as klines here); ascending; "If the number of data
    between startTime and endTime is larger than limit, return as startTime + limit"; "If
    startTime and endTime are not sent, the most recent 200 records are returned" (the newest
    ``limit`` when one is sent; with endTime alone, the newest ``limit`` up to it). Rows:
    symbol, fundingTime (ms), fundingRate (8 decimals, a string), markPrice (a string; the
    book's current price here: the double keeps no price history). Settlements after the
    server's clock are not served. Not modelled: the shared 500/5min/IP weight limit.
    """
    perpetuals = {f"{s}:{s.split('/')[1]}": server.market_id(s) for s in server.markets}
    store = _funding_store(server, list(perpetuals), funding)

    def funding_rate(request: Request) -> Reply:
        q = request.query
        if "symbol" in q:
            chosen = [p for p, market_id in perpetuals.items() if market_id == q["symbol"]]
            if not chosen:
                return server._error(400, -1121, "Invalid symbol.")
        else:
            chosen = list(perpetuals)
        bounds = {}
        for name in ("startTime", "endTime", "limit"):
            if name in q:
                if not re.fullmatch(r"[0-9]{1,20}", q[name]):
                    return server._error(
                        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
                    )
                bounds[name] = int(q[name])
        if not 1 <= bounds.get("limit", 100) <= 1000:
            return server._error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if "startTime" in bounds and "endTime" in bounds and bounds["startTime"] > bounds["endTime"]:
            return server._error(400, -1023, "Start time is greater than end time.")
        rows = []
        for perpetual in chosen:
            times, rates = _settled(store[perpetual], server._now_ms())
            mark = f"{server.futures.prices[perpetual]:.8f}"
            rows += [
                (int(t), perpetual, float(r), mark)
                for t, r in zip(times, rates)
                if bounds.get("startTime", t) <= t <= bounds.get("endTime", t)
            ]
        rows.sort()
        if "startTime" in bounds:
            rows = rows[: bounds.get("limit", 100)]
        else:
            count = bounds.get("limit", 100 if "endTime" in bounds else 200)
            rows = rows[-count:] if count else []
        return Reply(
            200,
            [
                {"symbol": perpetuals[p], "fundingTime": t, "fundingRate": f"{r:.8f}", "markPrice": mark}
                for t, p, r, mark in rows
            ],
        )

    server.route("GET", "/fapi/v1/fundingRate", funding_rate)
    return store


def serve_gate_funding(server: Gate, funding: Mapping[str, pd.Series] | None = None) -> dict[str, pd.Series]:
    """Serve Gate APIv4 ``GET /futures/usdt/funding_rate`` ("Funding rate history",
    https://www.gate.io/docs/developers/apiv4/#funding-rate-history; gateapi-python
    ``FuturesApi.list_futures_funding_rate_history``) for ``server``'s USDT perpetuals, from
    ``funding`` or synthetic series (``server.funding``). ``contract`` required
    (MISSING_REQUIRED_PARAM; an unknown one CONTRACT_NOT_FOUND); ``limit`` 1 to 1000, default 100
    (else INVALID_PARAM_VALUE); ``from``/``to`` Unix seconds, ``to`` defaulting to now and
    ``from`` to "the data start time of the time range actually returned by to and limit".
    Gate lists newest first, so when [from, to] holds more than ``limit`` settlements the page
    is the newest ``limit`` of them. Rows: ``t`` (seconds, an integer) and ``r`` (a string).
    """
    perpetuals = {f"{s}:{s.split('/')[1]}": server.market_id(s) for s in server.markets}
    store = _funding_store(server, list(perpetuals), funding)

    def funding_rate(request: Request) -> Reply:
        q = request.query
        if not q.get("contract"):
            return server._error(400, "MISSING_REQUIRED_PARAM", "Missing required parameter: contract")
        perpetual = next((p for p, market_id in perpetuals.items() if market_id == q["contract"]), None)
        if perpetual is None:
            return server._error(400, "CONTRACT_NOT_FOUND", f"contract {q['contract']} not found")
        values = {}
        for name in ("limit", "from", "to"):
            if name in q:
                if not re.fullmatch(r"-?[0-9]+", q[name]):
                    return server._error(400, "INVALID_PARAM_VALUE", f"invalid argument: {name}")
                values[name] = int(q[name])
        limit = values.get("limit", 100)
        if not 1 <= limit <= 1000:
            return server._error(400, "INVALID_PARAM_VALUE", "invalid argument: limit")
        now_s = int(server.clock())
        to = values.get("to", now_s)
        if "from" in values and values["from"] > to:
            return server._error(400, "INVALID_PARAM_VALUE", "invalid argument: from is later than to")
        times, rates = _settled(store[perpetual], min(to, now_s) * 1000)
        rows = [
            (int(t) // 1000, float(r)) for t, r in zip(times, rates) if values.get("from", int(t) // 1000) * 1000 <= t
        ]
        rows = rows[::-1][:limit]  # newest first, the newest ``limit``
        return Reply(200, [{"t": t, "r": f"{r:.8f}".rstrip("0").rstrip(".") if r else "0"} for t, r in rows])

    server.route("GET", f"{server.API}/futures/usdt/funding_rate", funding_rate)
    return store


def funding_client(server: Binance | Gate, **config: Any) -> Any:
    """A real ``ccxt.binanceusdm`` or ``ccxt.gate`` (USDT perpetuals only, no keys) pointed at
    ``server``: what a notebook fetching funding rates uses."""
    import ccxt

    if isinstance(server, Gate):
        options = {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["swap"]},
            "swap": {"fetchMarkets": {"settlementCurrencies": ["usdt"]}},
        }
        return ccxt.gate(
            {
                "urls": {"api": server.api_urls()},
                "options": options,
                "enableRateLimit": False,
                "has": {"fetchCurrencies": False},
                **config,
            }
        )  # as workbench.exchange opens it
    options = {"fetchMarkets": {"types": ["linear"]}, "fetchMargins": False}
    urls = server._rewrite(ccxt.binanceusdm().urls["api"])
    return ccxt.binanceusdm({"urls": {"api": urls}, "options": options, "enableRateLimit": False, **config})
