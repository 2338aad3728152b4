"""``workbench notify ...``: list, test and remove a tenant's channels; run a delivery pass."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    notify = subparsers.add_parser("notify", help="notification channels: list, test, remove; deliver now")
    actions = notify.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text, func in (
        ("list", "the tenant's channels (no secret shown)", _list),
        ("test", "send a test message through CHANNEL", _test),
        ("remove", "delete CHANNEL and its sealed secrets", _remove),
    ):
        action = actions.add_parser(name, help=text)
        if name != "list":
            action.add_argument("channel", help="the channel's id or name")
        action.add_argument("--tenant", help="whose channels (default: the tenant of this process)")
        action.set_defaults(func=func)
    actions.add_parser("deliver", help="one delivery pass now (the workers run them on their own)").set_defaults(
        func=_deliver
    )


def _channel(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _list(args: argparse.Namespace) -> int:
    from workbench import store
    from workbench.notify._channels import listing

    with store.tenant_session(args.tenant) if args.tenant else store.session() as db:
        table = listing(db)
    print(table.drop(columns=["created_at"]).to_string() if len(table) else "no notification channels")
    return 0


def _test(args: argparse.Namespace) -> int:
    from workbench.notify._channels import Admin

    print(Admin(args.tenant).test(_channel(args.channel)))
    return 0


def _remove(args: argparse.Namespace) -> int:
    from workbench.notify._channels import Admin

    Admin(args.tenant).remove(_channel(args.channel))
    print(f"removed notification channel {args.channel}")
    return 0


def _deliver(args: argparse.Namespace) -> int:
    from workbench.notify._delivery import deliver

    report = deliver()
    print(
        "another delivery pass is running"
        if report.busy
        else f"{report.sent} sent, {report.retried} to retry, {report.failed} failed, {report.postponed} held by "
        f"rate limits" + (f"; disabled {', '.join(report.disabled)}" if report.disabled else "")
    )
    return 0
