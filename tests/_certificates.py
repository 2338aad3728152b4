"""Certificates written straight into ``strategy_certificates`` as the owner (the trusted
worker's role), for tests that promote a session trading on a (loopback) real exchange: the
database's gate then finds a passing certificate of the session's strategy as it is now.
``tests/test_gate.py`` tests the gate itself and the certificates the worker computes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from workbench import store

PASSING = {
    "walk_forward_efficiency": 0.8,
    "oos_total_return": 0.12,
    "pbo": 0.1,
    "deflated_sharpe": 0.99,
    "lookahead": True,
    "probability_of_ruin": 0.0,
    "max_drawdown_p50": 0.05,
    "max_drawdown_p95": 0.1,
}

_INSERT = text(
    "INSERT INTO strategy_certificates (tenant_id, strategy_id, fingerprint, template, dataset, data_sha256,"
    " data_start, data_end, bars, passed, statistics, thresholds, certificate)"
    " SELECT s.tenant_id, s.id, strategy_fingerprint(s.template, s.params, s.risk_limits), s.template, :dataset,"
    " repeat('0', 64), coalesce(:data_end, now()) - interval '30 days', coalesce(:data_end, now()), 720, :passed,"
    " CAST(:statistics AS jsonb), '{}'::jsonb, CAST(:certificate AS jsonb)"
    " FROM strategies s WHERE s.tenant_id = :tenant AND s.id = :strategy RETURNING id"
)


def certify_strategy(
    tenant_id: int,
    strategy_id: int,
    *,
    db: Session | None = None,
    statistics: dict[str, Any] | None = None,
    data_end: datetime | None = None,
    dataset: str = "test:written-by-the-owner",
) -> int:
    """Insert a certificate (default: passing, on data ending now) of the strategy as stored;
    its id. ``db``: an owner session to write in (default: one of its own)."""
    values = {**PASSING, **(statistics or {})}
    params = {
        "tenant": tenant_id,
        "strategy": strategy_id,
        "dataset": dataset,
        "data_end": data_end,
        "passed": statistics is None,
        "statistics": json.dumps(values),
        "certificate": json.dumps({"kind": "workbench.validation", "statistics": values, "checks": []}),
    }
    if db is not None:
        return int(db.execute(_INSERT, params).scalar_one())
    with store.owner_session() as owner:
        return int(owner.execute(_INSERT, params).scalar_one())


def certify_session(session_id: int, *, db: Session | None = None, **options: Any) -> int:
    """Certify the strategy of trading session ``session_id`` (see :func:`certify_strategy`)."""

    def strategy(scope: Session) -> tuple[int, int]:
        row = scope.execute(
            text("SELECT tenant_id, strategy_id FROM trading_sessions WHERE id = :id"), {"id": session_id}
        ).one()
        return int(row.tenant_id), int(row.strategy_id)

    if db is not None:
        return certify_strategy(*strategy(db), db=db, **options)
    with store.owner_session() as owner:
        return certify_strategy(*strategy(owner), db=owner, **options)
