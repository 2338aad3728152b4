"""The ``workbench`` command: a thin layer over the Python API.

Each concern registers its own sub-commands (``backtest``, ``sweep``, ``validate``, ``db``,
``tenant``, ``vault``...) from a ``_cli`` module, the way papermill keeps one module per concern.
Bad input ends with a one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from workbench.errors import WorkbenchError

# modules that define register(subparsers); imported lazily so `workbench --help` is fast
_COMMAND_MODULES = [
    "workbench.backtest._cli",
    "workbench.research._cli",
    "workbench.store._cli",
    "workbench.vault._cli",
    "workbench.scheduler._cli",
    "workbench.hub._cli",
    "workbench.notify._cli",
    "workbench.market._cli",
]


def one_line(message: str) -> str:
    """A multi-line error (a candle report quotes one row per line) as one line for stderr:
    a line ending in ':' introduces the next, the others are separated by '; '."""
    parts = [line.strip() for line in message.splitlines() if line.strip()]
    text = parts[0] if parts else ""
    for part in parts[1:]:
        text += (" " if text.endswith(":") else "; ") + part
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (sub-command parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line that cannot be read or written
        print(f"workbench {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
