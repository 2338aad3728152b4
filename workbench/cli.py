"""The ``workbench`` command: a thin layer over the Python API.

Each concern registers its own sub-commands (``backtest``, ``sweep``, ``db``, ``tenant``,
``vault``...) from a ``_cli`` module, the way papermill keeps one module per concern.
Bad input ends with a one-line message on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from workbench.errors import WorkbenchError

# modules that define register(subparsers); imported lazily so `workbench --help` is fast
_COMMAND_MODULES = [
    "workbench.backtest._cli",
    "workbench.store._cli",
    "workbench.vault._cli",
    "workbench.scheduler._cli",
    "workbench.hub._cli",
    "workbench.notify._cli",
    "workbench.market._cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line that cannot be read or written
        print(f"workbench {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
