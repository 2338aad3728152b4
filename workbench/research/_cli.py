"""``workbench validate`` and ``workbench walk-forward``: the validation battery and a
walk-forward of a template's grid on a candle CSV (or the bundled candles)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from workbench.backtest.options import candles, clean, json_arg, parent_parser, settings
from workbench.errors import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    common = parent_parser()
    common.add_argument("--grid", metavar="JSON", required=True, help='{"param": [values...]} as JSON, or @file.json')
    common.add_argument(
        "--folds",
        type=int,
        default=4,
        help="walk-forward folds: the test windows tile the candles' end, each training window "
        "twice as long (default 4)",
    )

    run = subparsers.add_parser(
        "validate",
        parents=[common],
        help="walk-forward, CPCV and PBO, deflated Sharpe (all the trials recorded), Monte Carlo and look-ahead "
        "of a grid, with a verdict",
    )
    run.add_argument("--params", metavar="JSON", help="the parameters to certify (default: the grid's best Sharpe)")
    run.add_argument("--groups", type=int, default=8, help="CPCV groups, even (default 8)")
    run.add_argument(
        "--thresholds",
        metavar="JSON",
        help='threshold overrides by check name, e.g. \'{"pbo": 0.3, "probability_of_ruin": 0.05}\'',
    )
    run.add_argument("--html", metavar="PATH", help="also write the one-page HTML report there")
    run.add_argument("--strict", action="store_true", help="exit with status 1 when the validation failed")
    run.add_argument("--json", action="store_true", help="print the certificate as JSON instead of a table")
    run.set_defaults(func=_validate)

    walk = subparsers.add_parser(
        "walk-forward", parents=[common], help="choose a grid's best on each training window, trade it on the next"
    )
    walk.add_argument("--train", type=int, help="bars per training window (default: from --folds)")
    walk.add_argument("--test", type=int, help="bars per test window (default: from --folds)")
    walk.add_argument("--step", type=int, help="bars between folds (default: the test window)")
    walk.add_argument("--anchored", action="store_true", help="training windows grow from the first candle")
    walk.add_argument("--objective", default="sharpe", help="metric the best row is chosen by (default sharpe)")
    walk.add_argument("--purge", type=int, default=0, help="bars left out between training and test (default 0)")
    walk.add_argument("--warmup", type=int, help="warm-up bars before each test window (default: 3 spans)")
    walk.add_argument("--json", action="store_true", help="print the folds as JSON instead of a table")
    walk.set_defaults(func=_walk_forward)


def _grid(text: str) -> dict[str, Any]:
    grid = json_arg(text, "--grid")
    if not isinstance(grid, dict) or not grid:
        raise ParameterError('--grid: expected a JSON object like {"entry_window": [20, 40]}', param="grid", value=grid)
    return grid


def _mapping(text: str | None, option: str) -> dict[str, Any] | None:
    value = json_arg(text, option)
    if value is not None and not isinstance(value, dict):
        raise ParameterError(f"{option}: expected a JSON object", param=option, value=value)
    return value


def _validate(args: argparse.Namespace) -> int:
    from workbench.research import validate

    grid = _grid(args.grid)
    report = validate(
        args.template,
        candles(args.candles),
        grid,
        params=_mapping(args.params, "--params"),
        folds=args.folds,
        n_groups=args.groups,
        thresholds=_mapping(args.thresholds, "--thresholds"),
        **settings(args),
    )
    if args.html:
        Path(args.html).write_text(report.html())
    if args.json:
        print(json.dumps(report.certificate, indent=2))
    else:
        shown = report.checks[["value", "threshold", "passed"]].map(lambda v: "" if v is None else v)
        print(shown.to_string())
        verdict = "passed" if report.passed else f"FAILED: {', '.join(report.failed)}"
        print(
            f"{report.certificate['strategy']['template']} {json.dumps(report.params)}: {verdict} "
            f"({report.trials} combinations tried on this strategy family and data set)"
        )
    return 1 if args.strict and not report.passed else 0


def _walk_forward(args: argparse.Namespace) -> int:
    from workbench.research import walk_forward
    from workbench.research._validate import fold_windows

    grid = _grid(args.grid)
    bars = candles(args.candles)
    train, test = fold_windows(len(bars), args.folds)
    wf = walk_forward(
        args.template,
        bars,
        grid,
        train=args.train or train,
        test=args.test or test,
        step=args.step,
        anchored=args.anchored,
        objective=args.objective,
        purge=args.purge,
        warmup=args.warmup,
        **settings(args),
    )
    oos = float(wf.equity.iloc[-1] / wf.init_cash - 1.0)
    if args.json:
        folds = [{k: _plain(v) for k, v in row.items()} for row in wf.folds.reset_index().to_dict("records")]
        print(
            json.dumps(
                {
                    "template": args.template,
                    "objective": wf.objective,
                    "efficiency": clean(wf.efficiency),
                    "oos_total_return": clean(oos),
                    "folds": folds,
                },
                indent=2,
            )
        )
    else:
        print(wf.folds.to_string())
        print(f"out-of-sample total return {oos:.4f}, walk-forward efficiency {wf.efficiency:.3f}")
    return 0


def _plain(value: Any) -> Any:
    """A folds cell as JSON: times as ISO 8601, numpy numbers as Python, NaN as null."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    return clean(value)
