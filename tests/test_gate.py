"""Real money waits for a certificate the platform computed: the gate in PostgreSQL
(revision 0016), the certifying worker (``workbench.research._certify``) and ``wb.promote``.

Each test has a tenant of its own (its notebook side acting as it) with a strategy, a session
on a real exchange (an account the owner wrote, as the vault does) and a paper one.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest
from sqlalchemy import select, text

import workbench as wb
from tests._certificates import certify_session
from workbench import store
from workbench.errors import SchedulerError
from workbench.research import _certify
from workbench.research._trials import hash_candles
from workbench.research._validate import THRESHOLDS
from workbench.scheduler import pause, promote, resume
from workbench.store.models import CertificateRequest, LiveNotebook, StrategyCertificate

PARAMS = {"entry_window": 48, "exit_window": 24}
SMALL = {"bars": 1500, "grid": {"entry_window": [24, 48], "exit_window": [12, 24]}, "folds": 2, "n_groups": 4}
LENIENT = {  # the operator's policy of a test that wants a computed certificate to pass
    "walk_forward_efficiency": {"value": None, "passes_when": ">"},
    "oos_total_return": {"value": -1.0, "passes_when": ">"},
    "pbo": {"value": 1.01, "passes_when": "<"},
    "deflated_sharpe": {"value": -1.0, "passes_when": ">"},
    "lookahead": {"value": True, "passes_when": "=="},
}


@pytest.fixture
def trader(database, monkeypatch, tmp_path) -> dict[str, Any]:
    name = f"g{secrets.token_hex(5)}"
    tenant = store.create_tenant(name)
    with store.owner_session() as s:
        s.add(store.TenantDataKey(tenant_id=tenant.id, version=1, wrapped_key=b"w", master_key_version=1))
        s.flush()
        account = store.ExchangeAccount(
            tenant_id=tenant.id,
            exchange="binance",
            label="main",
            api_key_ct=b"c",
            secret_ct=b"c",
            key_hint="ab12…9f",
            data_key_version=1,
        )
        strategy = store.Strategy(tenant_id=tenant.id, name="gated", template="channel", params=PARAMS)
        s.add_all([account, strategy])
        s.flush()
        real = store.TradingSession(
            tenant_id=tenant.id,
            strategy_id=strategy.id,
            exchange_account_id=account.id,
            exchange="binance",
            symbol="BTC/USDT",
            leverage=Decimal(1),
        )
        paper = store.TradingSession(tenant_id=tenant.id, strategy_id=strategy.id, exchange="paper", symbol="BTC/USD")
        s.add_all([real, paper])
        s.flush()
    monkeypatch.setenv(store.TENANT_URL_ENV, store.tenant_url(name))
    monkeypatch.setenv("WORKBENCH_DB_IDLE_CLOSE", "0")  # no idle reaper of this process's pools set by this file
    return {
        "name": name,
        "tenant": tenant,
        "strategy": strategy.id,
        "real": real.id,
        "paper": paper.id,
        "notebook": _notebook(tmp_path),
    }


@pytest.fixture
def policy(database) -> Iterator[Any]:
    """The operator's policy, set by the test and restored after it."""
    with store.owner_session() as s:
        before = s.execute(text("SELECT thresholds, max_data_age FROM certificate_policy")).one()

    def set_policy(thresholds: dict | None = None, max_data_age: str | None = None) -> None:
        with store.owner_session() as s:
            if thresholds is not None:
                s.execute(
                    text("UPDATE certificate_policy SET thresholds = CAST(:t AS jsonb)"), {"t": json.dumps(thresholds)}
                )
            if max_data_age is not None:
                s.execute(
                    text("UPDATE certificate_policy SET max_data_age = CAST(:a AS interval)"), {"a": max_data_age}
                )

    yield set_policy
    with store.owner_session() as s:
        s.execute(
            text("UPDATE certificate_policy SET thresholds = CAST(:t AS jsonb), max_data_age = :a"),
            {"t": json.dumps(before.thresholds), "a": before.max_data_age},
        )


def _notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    cell = nbformat.v4.new_code_cell("session_id = 0\nrun_id = 0\nscheduled_for = ''")
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    path = folder / "live.ipynb"
    nbformat.write(nb, path)
    return path


def _tenant_sql(database, name: str) -> psycopg.Connection:
    return psycopg.connect(database.server.libpq_url(store.tenant_url(name)), autocommit=True)


def test_the_policys_defaults_are_the_research_packages_thresholds(database):
    with store.owner_session() as s:
        thresholds, age = s.execute(text("SELECT thresholds, max_data_age FROM certificate_policy")).one()
    assert {name: (spec["value"], spec["passes_when"]) for name, spec in thresholds.items()} == THRESHOLDS
    assert age == timedelta(days=30)
    periodic = {entry.task.name for entry in _certify.blueprint.periodic_registry.periodic_tasks.values()}
    assert _certify.TASK in periodic  # the worker defers it every minute


def test_real_money_without_a_certificate_is_refused_and_paper_needs_none(trader):
    with pytest.raises(SchedulerError) as refused:
        promote(trader["notebook"], trader["real"], "candle:5m")
    message = str(refused.value)
    assert message.startswith(f"promotion refused: session #{trader['real']} trades real money on binance")
    assert f"strategy #{trader['strategy']}, as it is now, has no certificate" in message
    assert f"wb.request_certificate({trader['strategy']}, dataset='bundled:btc-usd-1h')" in message
    assert "\n" not in message
    assert promote(trader["notebook"], trader["paper"], "candle:5m").status == "active"
    with store.owner_session() as s:
        assert s.scalar(select(LiveNotebook.id).where(LiveNotebook.session_id == trader["real"])) is None


@pytest.mark.slow  # the battery itself takes a second; compiling the channel kernel in a fresh process, ~15
def test_a_certificate_the_worker_computed_gates_by_the_operators_policy(trader, policy):
    policy(max_data_age="20000 days")  # the bundled candles end in 2019
    request = wb.request_certificate(trader["strategy"], "bundled:btc-usd-1h", **SMALL)
    assert wb.certificate_requests().loc[request, "status"] == "pending"
    assert request in _certify.certify_due()
    done = wb.certificate_requests().loc[request]
    assert done["status"] == "done" and done["message"].startswith(f"certificate #{done['certificate_id']}")
    table = wb.certificates(trader["strategy"])
    assert list(table.index) == [done["certificate_id"]]
    with store.owner_session() as s:
        cert = s.get(StrategyCertificate, int(done["certificate_id"]))
        fingerprint = s.scalar(
            text("SELECT strategy_fingerprint(template, params, risk_limits) FROM strategies WHERE id = :i"),
            {"i": trader["strategy"]},
        )
    candles = wb.load_candles().iloc[-1500:]
    assert cert.fingerprint == fingerprint and cert.dataset == "bundled:btc-usd-1h" and cert.bars == 1500
    assert cert.data_sha256 == hash_candles(candles)
    assert cert.data_end == candles.index[-1].to_pydatetime()
    assert cert.certificate["strategy"]["params"]["entry_window"] == 48
    assert cert.thresholds["pbo"] == {"value": 0.5, "passes_when": "<"}
    failed = [
        name
        for name, (limit, how) in THRESHOLDS.items()
        if limit is not None and not _passes(cert.statistics[name], limit, how)
    ]
    assert cert.passed is (not failed) and failed, cert.statistics  # the default thresholds: a small grid fails
    with pytest.raises(SchedulerError) as refused:
        promote(trader["notebook"], trader["real"], "candle:5m")
    message = str(refused.value)
    assert f"certificate #{cert.id} of strategy #{trader['strategy']} failed: " in message
    for name in failed:
        value = cert.statistics[name]
        shown = "none" if value is None else (str(value).lower() if isinstance(value, bool) else f"{round(value, 4)}")
        assert f"{name} = " in message and f"(needs {THRESHOLDS[name][1]} " in message, message
        assert name in message and (shown in message or shown.rstrip("0") in message), (name, shown, message)
    policy(thresholds=LENIENT)  # the operator's thresholds decide, read by the gate when promoting
    assert promote(trader["notebook"], trader["real"], "candle:5m").status == "active"


def test_a_stale_certificate_is_refused(trader):
    certify_session(trader["real"], data_end=datetime.now(UTC) - timedelta(days=45))
    with pytest.raises(
        SchedulerError, match=r"is on data ending \d{4}-\d\d-\d\d \d\d:\d\d UTC, older than the maximum"
    ):
        promote(trader["notebook"], trader["real"], "candle:5m")
    certify_session(trader["real"])  # the newest certificate counts
    assert promote(trader["notebook"], trader["real"], "candle:5m").status == "active"


def test_resuming_and_reviving_a_notebook_is_gated_too(trader, database):
    certify_session(trader["real"])
    promote(trader["notebook"], trader["real"], "candle:5m")
    pause(trader["real"])
    certify_session(trader["real"], statistics={"pbo": 0.7, "deflated_sharpe": 0.5})  # newer and failing
    with pytest.raises(
        SchedulerError, match=r"failed: deflated_sharpe = 0\.5 \(needs > 0\.95\), pbo = 0\.7 \(needs < 0\.5\)$"
    ):
        resume(trader["real"])
    with store.owner_session() as s:
        assert s.scalar(select(LiveNotebook.status).where(LiveNotebook.session_id == trader["real"])) == "paused"
        s.execute(text("UPDATE live_notebooks SET status = 'stopped' WHERE session_id = :s"), {"s": trader["real"]})
    with _tenant_sql(database, trader["name"]) as conn:  # a demoted notebook revived by hand
        with pytest.raises(psycopg.errors.CheckViolation, match="certificate gate: .* failed: deflated_sharpe"):
            conn.execute("UPDATE live_notebooks SET status = 'active' WHERE session_id = %s", [trader["real"]])
        # a paper notebook moved to the real session, or its session moved to a real exchange
        promote(trader["notebook"], trader["paper"], "candle:5m")
        with pytest.raises(psycopg.errors.CheckViolation, match="certificate gate"):
            conn.execute(
                "UPDATE live_notebooks SET session_id = %s WHERE session_id = %s AND status = 'active'",
                [trader["real"], trader["paper"]],
            )
        with pytest.raises(psycopg.errors.CheckViolation, match="certificate gate"):
            conn.execute("UPDATE trading_sessions SET exchange = 'binance' WHERE id = %s", [trader["paper"]])
    certify_session(trader["real"])  # certified again: the tenant may revive it
    with _tenant_sql(database, trader["name"]) as conn:
        conn.execute("UPDATE live_notebooks SET status = 'active' WHERE session_id = %s", [trader["real"]])
    assert _live(trader["real"]) == "active"


def test_changing_a_certified_strategy_under_an_active_notebook_is_refused(trader, database):
    certify_session(trader["real"])
    promote(trader["notebook"], trader["real"], "candle:5m")
    with _tenant_sql(database, trader["name"]) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="as it is now, has no certificate"):
            conn.execute(
                "UPDATE strategies SET params = params || '{\"entry_window\": 12}' WHERE id = %s", [trader["strategy"]]
            )
        conn.execute("UPDATE strategies SET name = 'renamed' WHERE id = %s", [trader["strategy"]])  # not gated


def test_the_hostile_tenant_cannot_forge_or_bypass(trader, database):
    certificate = certify_session(trader["paper"], statistics={"pbo": 0.9})
    request = wb.request_certificate(trader["strategy"])
    fake = json.dumps({"pbo": 0.0})
    denied = [
        (
            "INSERT INTO strategy_certificates (strategy_id, fingerprint, template, dataset, data_sha256, data_start,"
            " data_end, bars, passed, statistics, thresholds, certificate) SELECT id,"
            " strategy_fingerprint(template, params, risk_limits), template, 'x', 'x', now(), now(), 1, true,"
            f" '{fake}', '{{}}', '{{}}' FROM strategies",
            "permission denied for table strategy_certificates",
        ),
        (f"UPDATE strategy_certificates SET passed = true, statistics = '{fake}'", "permission denied"),
        (f"DELETE FROM strategy_certificates WHERE id = {certificate}", "permission denied"),
        (f"UPDATE certificate_requests SET status = 'done' WHERE id = {request}", "permission denied"),
        ("UPDATE certificate_policy SET max_data_age = '100 years'", "permission denied"),
        ("ALTER TABLE live_notebooks DISABLE TRIGGER certificate_gate", "must be owner"),
        ("DROP TRIGGER certificate_gate ON live_notebooks", "must be owner"),
        ("SET session_replication_role = replica", "permission denied"),
        (
            f"SELECT certificate_refusal({trader['tenant'].id}, 1, 'binance', {trader['strategy']}, 'x')",
            "permission denied for function",
        ),
        (
            "CREATE OR REPLACE FUNCTION live_notebooks_gate() RETURNS trigger LANGUAGE sql AS 'SELECT NULL'",
            "denied|owner",
        ),
    ]
    with _tenant_sql(database, trader["name"]) as conn:
        for statement, refusal in denied:
            with pytest.raises(psycopg.Error, match=refusal):
                conn.execute(statement)
        # a request inserted as finished is recorded as pending: only the worker finishes one
        conn.execute(
            "INSERT INTO certificate_requests (strategy_id, dataset, status, message) VALUES (%s, 'x', 'done', 'ok')",
            [trader["strategy"]],
        )
        statuses = conn.execute("SELECT DISTINCT status FROM certificate_requests").fetchall()
        assert statuses == [("pending",)]
        assert conn.execute("SELECT count(*) FROM strategy_certificates").fetchone() == (1,)
    with store.owner_session() as s:
        assert s.get(StrategyCertificate, certificate).statistics["pbo"] == 0.9
        assert s.get(CertificateRequest, request).status == "pending"


def test_a_bad_data_set_or_request_is_one_line(trader):
    with pytest.raises(wb.ParameterError, match="^dataset: 'somewhere' is not allowed"):
        wb.request_certificate(trader["strategy"], "somewhere")
    with pytest.raises(wb.ParameterError, match="^strategy: no saved strategy #999999"):
        wb.request_certificate(999999)
    request = wb.request_certificate(trader["strategy"], "cache:nowhere:BTC/USDT:1h")
    assert request in _certify.certify_due()
    failed = wb.certificate_requests().loc[request]
    assert failed["status"] == "failed" and "\n" not in failed["message"] and failed["certificate_id"] is None


def _live(session_id: int) -> str | None:
    with store.owner_session() as s:
        return s.scalar(
            select(LiveNotebook.status).where(LiveNotebook.session_id == session_id).order_by(LiveNotebook.id.desc())
        )


def _passes(value: Any, limit: Any, how: str) -> bool:
    if how == "==":
        return bool(value) == bool(limit)
    if value is None or not math.isfinite(value):
        return False
    return value > limit if how == ">" else value < limit
