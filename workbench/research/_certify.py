"""Certificates the platform computes itself: what real-money live notebooks need.

A tenant's notebook runs in the tenant's own kernel, so anything it computes, a
:class:`~workbench.research.ValidationReport` and its certificate included, could be made up.
The gate of real-money trading (revision 0016: a database trigger on ``live_notebooks``)
therefore trusts only rows of ``strategy_certificates``, which tenants may read but never
write. They are written here, by the trusted worker (the owner role):

1. the tenant asks, :func:`request_certificate` inserts a ``pending`` row into
   ``certificate_requests`` (the strategy, a named data set, the battery's size);
2. the worker's periodic job ``workbench:certify_pending`` (every minute) takes each pending
   request (:func:`certify_due`), reads the strategy **as stored** (a template of this
   package with its parameters and risk limits, or a rule strategy's parsed rule text: never
   code of the tenant), loads the named data set itself, and runs the validation battery
   (:func:`workbench.validate`) with the operator's thresholds (``certificate_policy``); the
   battery's trial ledger is the tenant's, so the deflated Sharpe ratio counts every search
   the tenant ever ran on that family and data set;
3. it writes the certificate (fingerprint of the validated version, the data set's name,
   sha256 and last candle, the verdict, the statistics and thresholds) and the request's
   outcome; :func:`certificates` lists them.

Data sets: ``"bundled:btc-usd-1h"`` (:func:`workbench.load_candles`; ``"bundled:<name>"`` for
any bundled set) and ``"cache:<exchange>:<symbol>:<timeframe>"``, the worker's own candle
cache of :func:`workbench.fetch_candles` served offline. The sha256 is that of the candles as
loaded (and cut to ``bars``), as the trial ledger hashes them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import func, select, text

from workbench import store
from workbench.errors import DatabaseError, ParameterError, WorkbenchError
from workbench.jobs import QUEUE, blueprint
from workbench.store.models import CertificatePolicy, CertificateRequest, Strategy, StrategyCertificate, Tenant
from workbench.strategies import Template, get_template

_log = logging.getLogger("workbench.research")
TASK = "certify_pending"
BUNDLED = {"btc-usd-1h": "btcusd_1h", "btcusd_1h": "btcusd_1h"}
DEFAULT_DATASET = "bundled:btc-usd-1h"
OPTIONS = ("bars", "grid", "folds", "n_groups")
MIN_BARS = 300
STALE_CLAIM = "1 hour"  # a request running this long lost its worker: taken again
COLUMNS = (
    "strategy_id",
    "template",
    "dataset",
    "data_sha256",
    "data_start",
    "data_end",
    "bars",
    "passed",
    "failed",
    "pbo",
    "deflated_sharpe",
    "oos_total_return",
    "walk_forward_efficiency",
    "fingerprint",
    "created_at",
)


# --- the tenant's side ---------------------------------------------------------------------------------------


def request_certificate(
    strategy: int | Any,
    dataset: str = DEFAULT_DATASET,
    *,
    bars: int | None = None,
    grid: Mapping[str, Any] | None = None,
    folds: int | None = None,
    n_groups: int | None = None,
) -> int:
    """Ask the platform to certify a saved strategy: a worker runs the validation battery on
    it, as stored, and records the certificate that real-money promotion needs.

    Args:
        strategy: the saved strategy's id (or a :class:`~workbench.strategies.SavedStrategy`).
        dataset: ``"bundled:btc-usd-1h"``, or ``"cache:<exchange>:<symbol>:<timeframe>"`` (the
            worker's candle cache).
        bars: validate only the last ``bars`` candles of the data set.
        grid: the parameter search to validate (as :func:`workbench.validate`); the strategy's
            own parameters fill every axis it does not give. Default: each of the first two
            numeric parameters at 0.8, 1 and 1.25 times its value.
        folds, n_groups: the battery's walk-forward folds and CPCV groups (defaults of
            :func:`workbench.validate`).

    Returns:
        The request's id; :func:`certificate_requests` shows its status, :func:`certificates`
        the certificate once the worker computed it (within a minute or so).

    Example:
        >>> wb.request_certificate(saved.id, "bundled:btc-usd-1h")          # doctest: +SKIP
    """
    strategy_id = _strategy_id(strategy)
    parse_dataset(dataset)
    options = _options({"bars": bars, "grid": grid, "folds": folds, "n_groups": n_groups})
    try:
        with store.session() as db:
            if db.get(Strategy, strategy_id) is None:  # row-level security: another tenant's is unknown too
                raise ParameterError(f"strategy: no saved strategy #{strategy_id}", param="strategy", value=strategy_id)
            row = CertificateRequest(strategy_id=strategy_id, dataset=dataset, options=options)
            db.add(row)
            db.flush()
            return int(row.id)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise DatabaseError(f"certificate request: could not record: {type(exc).__name__}: {_line(exc)}") from None


def certificates(strategy: int | Any | None = None) -> pd.DataFrame:
    """The tenant's certificates, oldest first, indexed by ``id``: the strategy, what was
    validated (``fingerprint``), the data set (name, sha256, first and last candle, bars),
    ``passed``, the names of the ``failed`` checks, the main statistics and ``created_at``."""
    query = select(StrategyCertificate).order_by(StrategyCertificate.id)
    if strategy is not None:
        query = query.where(StrategyCertificate.strategy_id == _strategy_id(strategy))
    with store.session() as db:
        rows = [
            {
                "id": r.id,
                **{c: getattr(r, c) for c in COLUMNS if hasattr(StrategyCertificate, c)},
                "failed": [c["name"] for c in r.certificate.get("checks", []) if c.get("passed") is False],
                **{name: r.statistics.get(name) for name in COLUMNS[9:13]},
            }
            for r in db.scalars(query)
        ]
    return pd.DataFrame(rows, columns=["id", *COLUMNS]).set_index("id")


def certificate_requests() -> pd.DataFrame:
    """The tenant's certificate requests, oldest first, indexed by ``id``: ``strategy_id``,
    ``dataset``, ``options``, ``status`` (pending, running, done, failed), ``message``,
    ``certificate_id`` and the times."""
    names = ("strategy_id", "dataset", "options", "status", "message", "certificate_id", "created_at", "finished_at")
    with store.session() as db:
        rows = [
            {"id": r.id, **{c: getattr(r, c) for c in names}}
            for r in db.scalars(select(CertificateRequest).order_by(CertificateRequest.id))
        ]
    return pd.DataFrame(rows, columns=["id", *names]).set_index("id")


# --- the trusted worker's side -------------------------------------------------------------------------------


@blueprint.periodic(cron="* * * * *", periodic_id="certificates")
@blueprint.task(name=TASK, queue=QUEUE, queueing_lock="certificates", priority=-2)
async def certify_pending(timestamp: int) -> None:
    """Every minute: certify the pending requests, in a thread (the worker's loop keeps beating)."""
    await asyncio.to_thread(certify_due)


def certify_due(limit: int | None = None) -> list[int]:
    """Take the pending requests one by one (several workers share them: ``SKIP LOCKED``) and
    certify each; the ids handled. Runs as the owner: trusted code only."""
    done: list[int] = []
    while limit is None or len(done) < limit:
        with store.owner_session() as db:
            claimed = db.scalar(
                text(
                    "UPDATE certificate_requests SET status = 'running', started_at = now() WHERE id = ("
                    " SELECT id FROM certificate_requests WHERE status = 'pending'"
                    f" OR (status = 'running' AND started_at < now() - interval '{STALE_CLAIM}')"
                    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
                )
            )
        if claimed is None:
            break
        certify(int(claimed))
        done.append(int(claimed))
    return done


def certify(request_id: int) -> int | None:
    """Certify request ``request_id`` (owner side): the new certificate's id, None when the
    battery could not run (the request then says why, in one line)."""
    with store.owner_session() as db:
        request = db.get(CertificateRequest, request_id)
        if request is None:
            raise ParameterError(f"no certificate request #{request_id}", param="request_id", value=request_id)
        found = db.execute(
            select(
                Strategy,
                Tenant.name,
                func.strategy_fingerprint(Strategy.template, Strategy.params, Strategy.risk_limits),
            )
            .join(Tenant, Tenant.id == Strategy.tenant_id)
            .where(Strategy.tenant_id == request.tenant_id, Strategy.id == request.strategy_id)
        ).one()
        strategy, tenant, fingerprint = found
        policy = db.get(CertificatePolicy, 1)
        thresholds = {name: spec.get("value") for name, spec in (policy.thresholds if policy else {}).items()}
        dataset, options = request.dataset, dict(request.options or {})
    try:
        candles = load_dataset(dataset, options.get("bars"))
        template = get_template(strategy.template)
        grid = certification_grid(template, strategy.params, options.get("grid"))
        settings = {k: options[k] for k in ("folds", "n_groups") if options.get(k) is not None}
        from workbench.research._validate import validate

        with store.acting_as(tenant):
            report = validate(
                template,
                candles,
                grid,
                params=dict(strategy.params),
                thresholds=thresholds,
                risk=dict(strategy.risk_limits),
                **settings,
            )
    except Exception as exc:  # the strategy, the data set or the options: one line on the request
        message = f"{type(exc).__name__}: {_line(exc)}" if not isinstance(exc, WorkbenchError) else _line(exc)
        _finish(request_id, "failed", message, None)
        _log.info("certificate request #%s failed: %s", request_id, message)
        return None
    cert = report.certificate
    with store.owner_session() as db:
        row = StrategyCertificate(
            tenant_id=strategy.tenant_id,
            strategy_id=strategy.id,
            fingerprint=fingerprint,
            template=strategy.template,
            dataset=dataset,
            data_sha256=cert["data"]["sha256"],
            data_start=pd.Timestamp(cert["data"]["start"]).to_pydatetime(),
            data_end=pd.Timestamp(cert["data"]["end"]).to_pydatetime(),
            bars=int(cert["data"]["bars"]),
            passed=bool(report.passed),
            statistics=cert["statistics"],
            thresholds=cert["thresholds"],
            certificate=cert,
            request_id=request_id,
        )
        db.add(row)
        db.flush()
        certificate_id = int(row.id)
    verdict = "passed" if report.passed else f"failed: {', '.join(report.failed)}"
    _finish(request_id, "done", f"certificate #{certificate_id} {verdict}", certificate_id)
    _log.info("certificate #%s of strategy #%s (request #%s) %s", certificate_id, strategy.id, request_id, verdict)
    return certificate_id


def parse_dataset(name: str) -> tuple[str, ...]:
    """``("bundled", name)`` or ``("cache", exchange, symbol, timeframe)``; ParameterError otherwise."""
    parts = tuple(name.split(":")) if isinstance(name, str) else ()
    if len(parts) == 2 and parts[0] == "bundled" and parts[1] in BUNDLED:
        return parts
    if len(parts) == 4 and parts[0] == "cache" and all(parts[1:]):
        return parts
    raise ParameterError(
        f"dataset: {name!r} is not allowed; expected 'bundled:btc-usd-1h' or 'cache:<exchange>:<symbol>:<timeframe>'",
        param="dataset",
        value=name,
    )


def load_dataset(name: str, bars: int | None = None) -> pd.DataFrame:
    """The named data set as the worker loads it, cut to its last ``bars`` candles."""
    from workbench.data import fetch_candles, load_candles

    parts = parse_dataset(name)
    if parts[0] == "bundled":
        candles = load_candles(BUNDLED[parts[1]])
    else:
        candles = fetch_candles(parts[1], parts[2], parts[3], offline=True)
    return candles.iloc[-int(bars) :] if bars else candles


def certification_grid(template: Template, params: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict:
    """The search validated: ``given`` axes (never its rule text), every other parameter fixed
    at the stored value; without ``given``, the first two numeric parameters (a rule
    strategy's variables) at 0.8, 1 and 1.25 times their value, within their ranges."""
    fixed: dict[str, Any] = {name: [value] for name, value in params.items()}
    if given:
        axes = {
            name: list(values) if _iterable(values) else [values] for name, values in given.items() if name != "rules"
        }
    else:
        axes = {}
        numeric: dict[str, tuple[Any, float | None, float | None, bool]]
        if template.name == "rules":
            from workbench.strategies.rules import parse_rules

            numeric = {k: (v, None, None, isinstance(v, int)) for k, v in parse_rules(params["rules"])["vars"].items()}
        else:
            numeric = {
                name: (params.get(name, p.default), p.min, p.max, p.kind == "int")
                for name, p in template.params.items()
                if p.kind in ("int", "float")
            }
        for name, (value, low, high, whole) in list(numeric.items())[:2]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            values = set()
            for factor in (0.8, 1.0, 1.25):
                v = value * factor
                v = max(low, v) if low is not None else v
                v = min(high, v) if high is not None else v
                values.add(int(round(v)) if whole else float(v))
            axes[name] = sorted(values)
    return {**fixed, **axes}


def _finish(request_id: int, status: str, message: str, certificate_id: int | None) -> None:
    with store.owner_session() as db:
        request = cast(CertificateRequest, db.get(CertificateRequest, request_id))
        request.status, request.message, request.certificate_id = status, message[:1000], certificate_id
        request.finished_at = datetime.now(UTC)


def _options(given: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("bars", "folds", "n_groups"):
        value = given.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (MIN_BARS if name == "bars" else 1):
            expected = f"a whole number >= {MIN_BARS}" if name == "bars" else "a whole number >= 1"
            raise ParameterError(f"{name}: {value!r} is not allowed; expected {expected}", param=name, value=value)
        out[name] = int(value)
    grid = given.get("grid")
    if grid is not None:
        if not isinstance(grid, Mapping):
            raise ParameterError(
                f"grid: a {type(grid).__name__} is not allowed; expected a mapping", param="grid", value=grid
            )
        out["grid"] = {str(k): list(v) if _iterable(v) else v for k, v in grid.items() if k != "rules"}
    return out


def _strategy_id(strategy: Any) -> int:
    value = getattr(strategy, "id", strategy)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(
            f"strategy: {strategy!r} is not allowed; expected a saved strategy's id", param="strategy", value=strategy
        )
    return int(value)


def _iterable(value: Any) -> bool:
    return not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__iter__")


def _line(exc: BaseException) -> str:
    text_ = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return text_[:300] + ("..." if len(text_) > 300 else "")
