"""The command-line options every backtesting command shares (``workbench backtest``,
``sweep``, ``validate``, ``walk-forward``): one parent parser and the readers of what it
parsed, so a setting means the same in each command."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from workbench.errors import ParameterError


def parent_parser(templates: str = "channel, ema_reversal, market_making, rules") -> argparse.ArgumentParser:
    """The template, the candles and the backtest's settings, as a parent for subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("template", help=f"template name: {templates}")
    common.add_argument(
        "--candles",
        required=True,
        metavar="CSV",
        help="OHLCV CSV file, or 'bundled' for the bundled BTC/USD hourly candles",
    )
    common.add_argument("--risk", metavar="JSON", help="risk limits, e.g. '{\"max_daily_loss\": 100}'")
    common.add_argument(
        "--fees",
        type=_fees,
        default=0.001,
        help="fee rate (default 0.001 = 0.1%%), or a venue's schedule: 'binance', 'gate swap vip1'",
    )
    common.add_argument(
        "--market",
        help="trade within a market's rules, e.g. 'binance BTC/USDT:USDT' "
        "(amount step, price tick, minimum order, maximum leverage)",
    )
    common.add_argument("--slippage", type=float, default=0.0005, help="slippage fraction (default 0.0005)")
    common.add_argument("--init-cash", type=float, default=10_000.0, help="starting balance (default 10000)")
    common.add_argument(
        "--risk-free",
        type=float,
        default=0.0,
        help="annual risk-free rate for Sharpe and Sortino (default 0; 0.04 = 4%%)",
    )
    common.add_argument(
        "--funding",
        type=_funding,
        default=0.0001,
        help="funding rate per 8 hours of perpetual positions (default 0.0001; 'none' for none)",
    )
    return common


def json_arg(text: str | None, option: str) -> Any:
    """JSON given inline or as ``@file``; None when not given."""
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


def candles(path: str):
    """The candles ``--candles`` names: a CSV file, or ``bundled``."""
    from workbench.data import load_candles, read_candles

    return load_candles() if path == "bundled" else read_candles(path)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The backtest's keyword arguments from the parsed options."""
    return {
        "risk": json_arg(args.risk, "--risk"),
        "fees": args.fees,
        "slippage": args.slippage,
        "init_cash": args.init_cash,
        "risk_free": args.risk_free,
        "market": args.market,
        "funding": args.funding,
    }


def clean(value: Any) -> Any:
    """JSON has no NaN: a figure that does not exist (no trades...) prints as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _funding(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off", "0") else float(text)


def _fees(text: str) -> float | str:
    """A rate, or the name of a venue's fee schedule (checked by the backtest)."""
    try:
        return float(text)
    except ValueError:
        return text
