"""``workbench backtest`` and ``workbench sweep``: metrics of a template on a candle CSV."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from workbench.errors import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("template", help="template name: channel, ema_reversal, market_making")
    common.add_argument("--candles", required=True, metavar="CSV",
                        help="OHLCV CSV file, or 'bundled' for the bundled BTC/USD hourly candles")
    common.add_argument("--risk", metavar="JSON", help='risk limits, e.g. \'{"max_daily_loss": 100}\'')
    common.add_argument("--fees", type=_fees, default=0.001,
                        help="fee rate (default 0.001 = 0.1%%), or a venue's schedule: 'binance', 'gate swap vip1'")
    common.add_argument("--market", help="trade within a market's rules, e.g. 'binance BTC/USDT:USDT' "
                                         "(amount step, price tick, minimum order, maximum leverage)")
    common.add_argument("--slippage", type=float, default=0.0005, help="slippage fraction (default 0.0005)")
    common.add_argument("--init-cash", type=float, default=10_000.0, help="starting balance (default 10000)")
    common.add_argument("--risk-free", type=float, default=0.0,
                        help="annual risk-free rate for Sharpe and Sortino (default 0; 0.04 = 4%%)")
    common.add_argument("--funding", type=_funding, default=0.0001,
                        help="funding rate per 8 hours of perpetual positions (default 0.0001; 'none' for none)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    run = subparsers.add_parser("backtest", parents=[common], help="backtest one parameter set")
    run.add_argument("--params", metavar="JSON", default="{}", help="parameters as JSON, or @file.json")
    run.set_defaults(func=_backtest)

    grid = subparsers.add_parser("sweep", parents=[common], help="backtest every combination of a grid")
    grid.add_argument("--grid", metavar="JSON", required=True,
                      help='{"param": [values...]} as JSON, or @file.json')
    grid.add_argument("--sort-by", default="sharpe", help="metric to rank by (default sharpe)")
    grid.add_argument("--top", type=int, default=20, help="rows to print (default 20; 0 = all)")
    grid.set_defaults(func=_sweep)


def _json_arg(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        return json.loads(text)
    except OSError as exc:
        raise ParameterError(f"{option}: cannot read {text[1:]!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{option}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _candles(path: str):
    from workbench.data import load_candles, read_candles

    return load_candles() if path == "bundled" else read_candles(path)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"risk": _json_arg(args.risk, "--risk"), "fees": args.fees, "slippage": args.slippage,
            "init_cash": args.init_cash, "risk_free": args.risk_free, "market": args.market, "funding": args.funding}


def _funding(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off", "0") else float(text)


def _fees(text: str) -> float | str:
    """A rate, or the name of a venue's fee schedule (checked by the backtest)."""
    try:
        return float(text)
    except ValueError:
        return text


def _clean(value: Any) -> Any:
    """JSON has no NaN: a metric that does not exist (no trades...) prints as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _backtest(args: argparse.Namespace) -> int:
    from workbench.backtest import backtest

    params = _json_arg(args.params, "--params")
    result = backtest(args.template, _candles(args.candles), params, **_settings(args))
    if args.json:
        print(json.dumps({"strategy": result.strategy,
                          "metrics": {k: _clean(v) for k, v in result.metrics.items()}}, indent=2))
    else:
        print(result.stats().to_string())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from workbench.backtest import sweep

    grid = _json_arg(args.grid, "--grid")
    if not isinstance(grid, dict):
        raise ParameterError('--grid: expected a JSON object like {"entry_window": [20, 40]}')
    table = sweep(args.template, _candles(args.candles), grid, sort_by=args.sort_by,
                     progress=not args.json, **_settings(args))
    shown = table if args.top == 0 else table.head(args.top)
    if args.json:
        rows = [{k: _clean(v) for k, v in row.items()} for row in shown.reset_index().to_dict("records")]
        print(json.dumps(rows, indent=2))
    else:
        print(shown.to_string())
    return 0
