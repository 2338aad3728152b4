"""A stand-in for exchange REST APIs on 127.0.0.1, so tests run the real ccxt client classes.

No exchange is reachable from development machines, and mocking ccxt would skip the code
that matters (its request building, signing and response parsing). So the boundary is
moved to HTTP: ``LoopbackExchange`` is a small threaded HTTP server on an ephemeral
loopback port that routes ``(method, path)`` to handlers, records every request, and can
be told to fail. ``BinanceSpot`` adds Binance's spot market-data endpoints in Binance's own
formats. Other venues (Gate.io) and order endpoints are further subclasses or routes.

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: a JSON-serialisable body, or text sent as is."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]


@dataclass
class _Fault:
    method: str | None
    path: str
    reply: Reply
    remaining: int | None  # None: until cleared
    after: int  # matching requests still let through before the fault starts


class LoopbackExchange:
    """The venue-neutral part: routing, request log, fault injection, start/stop."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []  # exceptions raised by handlers (answered with 500)
        self._routes: dict[tuple[str, str], Handler] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
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
    ) -> None:
        """Answer requests to ``path`` with ``status``: after letting ``after`` through, the
        next ``times`` ones (all, until cleared, when None)."""
        with self._lock:
            self._faults.append(_Fault(method and method.upper(), path, Reply(status, body), times, after))

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
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="loopback-exchange", daemon=True)
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

    def handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
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
        if fault is not None:
            return fault.reply
        handler = self._routes.get((request.method, request.path))
        if handler is None:
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
        )
        reply = self.server.exchange.handle(request)  # type: ignore[attr-defined]
        is_text = isinstance(reply.body, str)
        payload = reply.body.encode() if is_text else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/plain" if is_text else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

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

    def __init__(self, candles: Mapping[str, pd.DataFrame] | None = None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.candles = dict(candles or {})
        self.clock = clock
        self.route("GET", "/api/v3/ping", lambda request: Reply(200, {}))
        self.route("GET", "/api/v3/time", lambda request: Reply(200, {"serverTime": self._now_ms()}))
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
        return Reply(200, {
            "timezone": "UTC",
            "serverTime": self._now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(symbol) for symbol in self.candles],
        })

    def _symbol_info(self, symbol: str) -> dict:
        base, quote = symbol.split("/")
        return {
            "symbol": self.market_id(symbol),
            "status": "TRADING",
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
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
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
        frame = self.candles[symbol]
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
            quote_volume = candle.volume * candle.close
            rows.append([
                int(opened), f"{candle.open:.8f}", f"{candle.high:.8f}", f"{candle.low:.8f}",
                f"{candle.close:.8f}", f"{candle.volume:.8f}", int(opened) + step - 1,
                f"{quote_volume:.8f}", 100, f"{candle.volume / 2:.8f}", f"{quote_volume / 2:.8f}", "0",
            ])
        return Reply(200, rows)


class BinanceAccount(BinanceSpot):
    """``BinanceSpot`` plus the signed account endpoints ``fetch_balance`` needs, checked the
    way Binance checks them: the ``X-MBX-APIKEY`` header must name the key and ``signature``
    must be the HMAC-SHA256 (hex, keyed by the secret) of the rest of the query string;
    otherwise Binance's own error answers (-2015, -1022, -1021)."""

    RECV_WINDOW_MS = 60_000

    def __init__(self, api_key: str, secret: str, balances: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key, self.secret, self.balances = api_key, secret, dict(balances)
        self.route("GET", "/api/v3/account", self._signed(self._account))
        self.route("GET", "/sapi/v1/capital/config/getall", self._signed(lambda request: Reply(200, [])))

    def config(self) -> dict[str, Any]:
        """ccxt constructor options for a ``ccxt.binance`` that talks to this server (spot only)."""
        import ccxt

        return {"urls": {"api": self._rewrite(ccxt.binance().urls["api"])},
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False}}

    def _signed(self, handler: Handler) -> Handler:
        def verify(request: Request) -> Reply:
            if request.headers.get("X-MBX-APIKEY") != self.api_key:
                return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
            params = dict(request.query)
            signature = params.pop("signature", "")
            expected = hmac.new(self.secret.encode(), urlencode(params).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature, expected):
                return self._error(400, -1022, "Signature for this request is not valid.")
            if abs(int(params.get("timestamp", 0)) - self._now_ms()) > self.RECV_WINDOW_MS:
                return self._error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            return handler(request)
        return verify

    def _account(self, request: Request) -> Reply:
        balances = [{"asset": asset, "free": free, "locked": "0.00000000"} for asset, free in self.balances.items()]
        return Reply(200, {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "canWithdraw": False,
                           "canDeposit": True, "updateTime": self._now_ms(), "accountType": "SPOT",
                           "balances": balances, "permissions": ["SPOT"]})
