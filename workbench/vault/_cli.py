"""``workbench vault status`` and ``workbench vault rotate``: the operator's key commands.

No command takes a key as an argument: process arguments are visible to every user of
the machine (``ps``), so keys enter through the notebook helpers or the form only.
"""
from __future__ import annotations

import argparse

# the store and SQLAlchemy load only when a vault command runs, so `workbench --help` stays fast
_ROTATE_HELP = """\
Re-wrap every tenant data key under a new master key version, then retire the old version.
Safe to interrupt: every key stays decryptable, and running it again finishes the job.
With the keyring in WORKBENCH_MASTER_KEY, add the new VERSION:KEY entry there first.
Test hook: WORKBENCH_VAULT_ROTATE_PAUSE_AFTER=N pauses after N tenants."""


def register(subparsers: argparse._SubParsersAction) -> None:
    vault = subparsers.add_parser("vault", help="the exchange-key vault: master key status and rotation")
    commands = vault.add_subparsers(dest="vault_command", metavar="SUBCOMMAND", required=True)
    commands.add_parser(
        "status", help="master key versions in the keyring and in use by tenant data keys",
    ).set_defaults(func=_status)
    commands.add_parser(
        "rotate",
        help="re-wrap every tenant data key under a new master key version, then retire the old one",
        description=_ROTATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(func=_rotate_command)


def _status(args: argparse.Namespace) -> int:
    from workbench.vault import _rotate

    print("\n".join(_rotate.status().lines()))
    return 0


def _rotate_command(args: argparse.Namespace) -> int:
    from workbench.vault import _rotate

    print("\n".join(_rotate.rotate(report=lambda line: print(line, flush=True)).lines()))
    return 0
