"""``workbench live ...``, ``workbench worker`` and ``workbench dashboard``.

``live`` commands act as the tenant when ``WORKBENCH_TENANT_DATABASE_URL`` is set (a tenant's
terminal), otherwise as the operator (owner role: every tenant's live notebooks).
"""

from __future__ import annotations

import argparse
import os

from workbench import store


def register(subparsers: argparse._SubParsersAction) -> None:
    live = subparsers.add_parser("live", help="promoted (live) notebooks: list, promote, pause, resume, stop")
    actions = live.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="what is live, with its next run").set_defaults(func=_list)
    promote = actions.add_parser("promote", help="freeze NOTEBOOK and run it for SESSION on SCHEDULE")
    promote.add_argument("notebook")
    promote.add_argument("session", type=int)
    promote.add_argument("schedule", help="'candle:5m' (every closed 5-minute candle) or a cron expression")
    promote.set_defaults(func=_promote)
    for name, text in (
        ("pause", "stop scheduling runs until resume"),
        ("resume", "schedule runs again from the next due time"),
        ("demote", "the notebook stops being live; the session keeps its state"),
        ("run-now", "make the live notebook due now"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("session", type=int)
        action.set_defaults(func=_change, change=name.replace("-", "_"))

    worker = subparsers.add_parser("worker", help="run one scheduler worker (dispatcher + notebook runs)")
    worker.add_argument("--concurrency", type=int, default=10, help="runs executed at once (default 10)")
    worker.add_argument(
        "--warm-kernels",
        type=int,
        default=10,
        metavar="N",
        help="ready kernels kept for the tenants with live notebooks, ~55 MB each "
        "(default 10; 0: every run forks its kernel when it starts)",
    )
    worker.add_argument(
        "--dispatch-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="longest pause between dispatcher passes (it also wakes at each due time)",
    )
    worker.add_argument("--heartbeat", type=float, default=2.0, metavar="SECONDS")
    worker.add_argument(
        "--stalled-after",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a worker without heartbeat this long is dead; its runs are marked abandoned",
    )
    worker.add_argument("-v", "--verbose", action="store_true", help="log every run")
    worker.set_defaults(func=_worker)

    dashboard = subparsers.add_parser("dashboard", help="serve the Voila dashboard of SESSION on 127.0.0.1")
    dashboard.add_argument("session", type=int)
    dashboard.add_argument("--port", type=int, default=8866)
    dashboard.set_defaults(func=_dashboard)


def _list(args: argparse.Namespace) -> int:
    from workbench.scheduler._promote import live_notebooks

    rows = live_notebooks(opener=store.opener())
    if not rows:
        print("nothing is live; promote a notebook with `workbench live promote NOTEBOOK SESSION SCHEDULE`")
        return 0
    header = ("TENANT", "SESSION", "SYMBOL", "SESSION STATUS", "NOTEBOOK", "SCHEDULE", "STATUS", "NEXT RUN", "LAST RUN")
    lines = [header] + [
        (
            r.tenant,
            f"#{r.session_id}",
            r.symbol,
            r.session_status,
            f"{os.path.basename(r.notebook)} v{r.version}",
            r.schedule,
            r.status,
            f"{r.next_run_at:%Y-%m-%d %H:%M:%S}" if r.next_run_at else "-",
            r.last_run or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
    return 0


def _promote(args: argparse.Namespace) -> int:
    from workbench.scheduler._promote import promote

    live = promote(args.notebook, args.session, args.schedule, opener=store.opener())
    print(
        f"session #{live.session_id}: {live.source_path} v{live.version} is live on {live.schedule!r}; "
        f"next run {live.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    return 0


def _change(args: argparse.Namespace) -> int:
    from workbench.scheduler import _promote

    live = getattr(_promote, args.change)(args.session, opener=store.opener())
    nxt = f", next run {live.next_run_at:%Y-%m-%d %H:%M:%S} UTC" if live.next_run_at else ""
    print(f"session #{live.session_id}: live notebook v{live.version} is {live.status}{nxt}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import logging

    from workbench.errors import SchedulerError
    from workbench.scheduler._worker import WorkerOptions, check_shared_secrets, run_worker

    if args.concurrency < 1:
        raise SchedulerError(f"--concurrency must be at least 1, not {args.concurrency}")
    if args.warm_kernels < 0:
        raise SchedulerError(f"--warm-kernels must be 0 or more, not {args.warm_kernels}")
    store.require_head()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    check_shared_secrets()
    run_worker(
        WorkerOptions(
            concurrency=args.concurrency,
            warm_kernels=args.warm_kernels,
            dispatch_interval=args.dispatch_interval,
            heartbeat=args.heartbeat,
            stalled_after=args.stalled_after,
        )
    )
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from workbench.scheduler._dashboard import serve_dashboard

    return serve_dashboard(args.session, args.port)
