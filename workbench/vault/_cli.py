"""``workbench vault status`` and ``workbench vault rotate [--tenant NAME]``: the operator's key commands.

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
With --tenant NAME: give that tenant a new data key instead, re-encrypt its exchange keys and
notification secrets under it and delete the old one, in one transaction (interrupted, nothing
changed; run it again). Each re-encrypted key is recorded in the tenant's key audit log.
Test hook: WORKBENCH_VAULT_ROTATE_PAUSE_AFTER=N pauses after N tenants (with --tenant: accounts)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    vault = subparsers.add_parser("vault", help="the exchange-key vault: master key status and rotation")
    commands = vault.add_subparsers(dest="vault_command", metavar="SUBCOMMAND", required=True)
    commands.add_parser(
        "status",
        help="master key versions in the keyring and in use by tenant data keys",
    ).set_defaults(func=_status)
    rotate = commands.add_parser(
        "rotate",
        help="re-wrap every tenant data key under a new master key version, then retire the old one "
        "(--tenant: rotate one tenant's data key)",
        description=_ROTATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rotate.add_argument("--tenant", metavar="NAME", help="rotate this tenant's data key and re-encrypt its keys")
    rotate.set_defaults(func=_rotate_command)


def _status(args: argparse.Namespace) -> int:
    from workbench.vault import _rotate

    print("\n".join(_rotate.status().lines()))
    return 0


def _rotate_command(args: argparse.Namespace) -> int:
    from workbench.vault import _rotate

    if args.tenant:
        _rotate.rotate_data_key(args.tenant, _report)
        return 0
    print("\n".join(_rotate.rotate(report=_report).lines()))
    return 0


def _report(line: str) -> None:
    print(line, flush=True)
