"""``workbench market ...``: the catalogue from a terminal.

``list``, ``show``, ``grant``, ``withdraw`` and ``verify`` act as the tenant when
``WORKBENCH_TENANT_DATABASE_URL`` is set (a tenant's terminal), otherwise as the operator
(every listing, withdrawn ones too; grants recorded as the operator's). ``publish`` and
``clone`` act as the tenant of the notebook session (``local`` in single-user mode).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from workbench import store
from workbench.errors import MarketError


def register(subparsers: argparse._SubParsersAction) -> None:
    market = subparsers.add_parser(
        "market", help="the strategy marketplace: list, show, publish, clone, grant, withdraw, verify"
    )
    actions = market.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the catalogue, filtered")
    listing.add_argument("--template")
    prices = listing.add_mutually_exclusive_group()
    prices.add_argument("--free", action="store_const", const=True, dest="free", help="free listings only")
    prices.add_argument("--paid", action="store_const", const=False, dest="free", help="paid listings only")
    listing.add_argument("--search", metavar="TEXT", help="text in the name or description")
    listing.add_argument("--min", action="append", default=[], metavar="METRIC=VALUE", help="e.g. sharpe=1")
    listing.add_argument("--max", action="append", default=[], metavar="METRIC=VALUE", help="e.g. max_drawdown=0.3")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one listing: metrics, data set, parameters when you may clone it")
    show.add_argument("listing", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)
    publish = actions.add_parser("publish", help="publish one of your saved strategies (backtested now)")
    publish.add_argument("strategy", help="the saved strategy's name (or #id)")
    publish.add_argument("--name", help="the listing's name (default: the strategy's)")
    publish.add_argument("--description", default="")
    publish.add_argument("--price", default="0", help="0: free (default)")
    publish.add_argument("--currency", default="USD")
    publish.add_argument("--dataset", default="btcusd_1h", help="a bundled data set (default btcusd_1h)")
    publish.set_defaults(func=_publish)
    clone = actions.add_parser("clone", help="copy a listing into your strategies")
    clone.add_argument("listing", type=int)
    clone.add_argument("--name", help="the new strategy's name (default: the listing's)")
    clone.set_defaults(func=_clone)
    grant = actions.add_parser("grant", help="let TENANT clone a paid listing")
    grant.add_argument("listing", type=int)
    grant.add_argument("tenant")
    grant.set_defaults(func=_grant)
    withdraw = actions.add_parser("withdraw", help="take a listing off the catalogue (clones stay)")
    withdraw.add_argument("listing", type=int)
    withdraw.set_defaults(func=_withdraw)
    verify = actions.add_parser("verify", help="backtest a listing again and compare with its published metrics")
    verify.add_argument("listing", type=int)
    verify.set_defaults(func=_verify)


def _bounds(pairs: list[str], option: str) -> dict[str, float]:
    bounds = {}
    for pair in pairs:
        metric, _, value = pair.partition("=")
        try:
            bounds[metric.strip()] = float(value)
        except ValueError:
            raise MarketError(f"{option} {pair!r}: expected METRIC=NUMBER, e.g. sharpe=1.5") from None
    return bounds


def _list(args: argparse.Namespace) -> int:
    from workbench.market import browse

    table = browse(
        args.template,
        free=args.free,
        search=args.search,
        min_metrics=_bounds(args.min, "--min"),
        max_metrics=_bounds(args.max, "--max"),
        opener=store.opener(),
    )
    if table.empty:
        print("no listings match")
        return 0
    shown = table[
        [
            "name",
            "author",
            "template",
            "price",
            "currency",
            "total_return",
            "sharpe",
            "max_drawdown",
            "trades",
            "cloneable",
            "status",
            "version",
        ]
    ]
    print(shown.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def _show(args: argparse.Namespace) -> int:
    from workbench.market import listing

    found = listing(args.listing, opener=store.opener())
    if args.json:
        fields = {
            k: getattr(found, k)
            for k in (
                "id",
                "name",
                "description",
                "author",
                "template",
                "dataset",
                "dataset_info",
                "settings",
                "metrics",
                "price",
                "currency",
                "status",
                "version",
                "params",
                "risk_limits",
            )
        }
        print(json.dumps(fields, indent=2, default=str))
        return 0
    print(found)
    if found.description:
        print(found.description)
    info = found.dataset_info
    print(
        f"measured on {found.dataset} ({info.get('symbol')} {info.get('timeframe')}, {info.get('start')} to "
        f"{info.get('end')}, {info.get('bars')} bars)"
    )
    print("price: free" if found.free else f"price: {found.price} {found.currency}")
    print(found.stats().to_string())
    print("strategy: " + (json.dumps(found.strategy) if found.cloneable else "(needs an entitlement)"))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from workbench.market import publish

    strategy: Any = (
        int(args.strategy[1:]) if args.strategy[:1] == "#" and args.strategy[1:].isdigit() else args.strategy
    )
    made = publish(
        strategy,
        name=args.name,
        description=args.description,
        price=args.price,
        currency=args.currency,
        dataset=args.dataset,
    )
    print(
        f"published listing #{made.id} {made.name!r} (sharpe {made.metrics['sharpe']}, "
        f"total return {made.metrics['total_return']})"
    )
    return 0


def _clone(args: argparse.Namespace) -> int:
    from workbench.market import clone

    saved = clone(args.listing, args.name)
    print(f"cloned listing #{args.listing} as strategy {saved}")
    return 0


def _grant(args: argparse.Namespace) -> int:
    from workbench.market import grant

    made = grant(args.listing, args.tenant, opener=store.opener())
    print(f"{made.grantee} may clone listing #{made.listing_id} (granted by {made.granted_by or 'the operator'})")
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from workbench.market import withdraw

    print(f"listing {withdraw(args.listing, opener=store.opener())}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from workbench.market import listing

    table = listing(args.listing, opener=store.opener()).verify()  # MarketError (exit 2) when they differ
    print(table.to_string())
    print(f"listing #{args.listing}: every published metric matches a new backtest")
    return 0
