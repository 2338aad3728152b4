"""``workbench hub``: run the multi-tenant hub (what ``python3 dev.py run`` starts), and
``workbench hub password NAME``: set a new password for a hub user (printed once)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    hub = subparsers.add_parser("hub", help="run JupyterHub with the workbench service (Ctrl-C stops)")
    hub.add_argument("--no-worker", action="store_true", help="do not start the job queue's worker")
    hub.set_defaults(func=_run)
    actions = hub.add_subparsers(dest="action", metavar="ACTION")
    password = actions.add_parser("password", help="set a new random password for hub user NAME and print it")
    password.add_argument("name")
    password.set_defaults(func=_password)


def _run(args: argparse.Namespace) -> int:
    from workbench.hub._launcher import run

    return run(worker=not args.no_worker)


def _password(args: argparse.Namespace) -> int:
    import secrets

    from workbench.hub._demo import set_password
    from workbench.hub._provision import validate_username
    from workbench.hub._settings import Settings

    password = secrets.token_urlsafe(12)
    set_password(Settings.from_env(), validate_username(args.name), password)
    print(password)
    return 0
