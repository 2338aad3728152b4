"""``workbench backtest`` and ``workbench sweep``: metrics of a template on a candle CSV."""

from __future__ import annotations

import argparse
import json

from workbench.backtest.options import candles, clean, json_arg, parent_parser, settings
from workbench.errors import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    common = parent_parser()
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    run = subparsers.add_parser("backtest", parents=[common], help="backtest one parameter set")
    run.add_argument("--params", metavar="JSON", default="{}", help="parameters as JSON, or @file.json")
    run.set_defaults(func=_backtest)

    grid = subparsers.add_parser("sweep", parents=[common], help="backtest every combination of a grid")
    grid.add_argument("--grid", metavar="JSON", required=True, help='{"param": [values...]} as JSON, or @file.json')
    grid.add_argument("--sort-by", default="sharpe", help="metric to rank by (default sharpe)")
    grid.add_argument("--top", type=int, default=20, help="rows to print (default 20; 0 = all)")
    grid.set_defaults(func=_sweep)


def _backtest(args: argparse.Namespace) -> int:
    from workbench.backtest import backtest

    params = json_arg(args.params, "--params")
    result = backtest(args.template, candles(args.candles), params, **settings(args))
    if args.json:
        print(
            json.dumps(
                {"strategy": result.strategy, "metrics": {k: clean(v) for k, v in result.metrics.items()}}, indent=2
            )
        )
    else:
        print(result.stats().to_string())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from workbench.backtest import sweep

    grid = json_arg(args.grid, "--grid")
    if not isinstance(grid, dict):
        raise ParameterError('--grid: expected a JSON object like {"entry_window": [20, 40]}')
    table = sweep(
        args.template, candles(args.candles), grid, sort_by=args.sort_by, progress=not args.json, **settings(args)
    )
    shown = table if args.top == 0 else table.head(args.top)
    if args.json:
        rows = [{k: clean(v) for k, v in row.items()} for row in shown.reset_index().to_dict("records")]
        print(json.dumps(rows, indent=2))
    else:
        print(shown.to_string())
    return 0
