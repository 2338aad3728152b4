"""Certificates the platform computed, and the gate that makes real money wait for one.

* ``certificate_policy``: the operator's policy, one row: the validation battery's thresholds
  (the research package's names and defaults: ``pbo`` < 0.5, ``deflated_sharpe`` > 0.95,
  ``oos_total_return`` > 0, ``walk_forward_efficiency`` > 0.5, ``lookahead`` passed) and the
  oldest a certificate's data may end (``max_data_age``, 30 days). Tenants may read it.
* ``strategy_certificates``: a trusted worker's verdict on one version of a strategy
  (``strategy_fingerprint(template, params, risk_limits)``) on a named data set. Tenants may
  read theirs, nothing else: only the owner role writes them.
* ``certificate_requests``: tenants insert (always ``pending``) and read theirs; the worker
  takes the pending ones and records the outcome.
* the gate: a live notebook of a session that trades anywhere but on the paper exchange
  becomes ``active`` (promoted, resumed, or moved to another session) only when the newest
  certificate of the session's strategy, as it is now, passes the policy and its data is
  recent enough; otherwise the statement fails with one line saying why (each failed
  threshold and its value, or no certificate and how to ask for one, or data too old).
  Changing an active notebook's session to another exchange or strategy, or the strategy's
  template, parameters or risk limits, is gated the same way. The functions are SECURITY
  DEFINER (they read the owner's policy and the certificates); tenants cannot call
  ``certificate_refusal`` and, owning no table, cannot disable a trigger.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 01:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import driver, forget_tenant_table, set_tenant_privileges, tenant_table

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# the research package's checks (workbench.research._validate.THRESHOLDS) and their defaults
DEFAULT_THRESHOLDS = """{
    "walk_forward_efficiency": {"value": 0.5, "passes_when": ">"},
    "oos_total_return": {"value": 0.0, "passes_when": ">"},
    "pbo": {"value": 0.5, "passes_when": "<"},
    "deflated_sharpe": {"value": 0.95, "passes_when": ">"},
    "lookahead": {"value": true, "passes_when": "=="},
    "probability_of_ruin": {"value": null, "passes_when": "<"},
    "max_drawdown_p50": {"value": null, "passes_when": "<"},
    "max_drawdown_p95": {"value": null, "passes_when": "<"}
}"""

_FUNCTIONS = """
CREATE FUNCTION strategy_fingerprint(_template text, _params jsonb, _risk_limits jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(
        jsonb_build_object('template', _template, 'params', _params, 'risk_limits', _risk_limits)::text, 'UTF8')), 'hex')
$$;

CREATE FUNCTION certificate_refusal(_tenant bigint, _session bigint, _exchange text, _strategy bigint,
                                    _fingerprint text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    _policy record;
    _cert record;
    _failed text[] := '{}';
    _name text;
    _spec jsonb;
    _value jsonb;
    _op text;
    _ok boolean;
BEGIN
    IF _exchange = 'paper' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO _policy FROM public.certificate_policy WHERE id = 1;
    SELECT * INTO _cert FROM public.strategy_certificates
        WHERE tenant_id = _tenant AND strategy_id = _strategy AND fingerprint = _fingerprint
        ORDER BY created_at DESC, id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN format('session #%s trades real money on %s and strategy #%s, as it is now, has no certificate; '
                      'request one with wb.request_certificate(%s, dataset=''bundled:btc-usd-1h'') '
                      '(wb.certificates() shows it when the worker has computed it)',
                      _session, _exchange, _strategy, _strategy);
    END IF;
    FOR _name, _spec IN SELECT key, value FROM jsonb_each(_policy.thresholds) ORDER BY key LOOP
        CONTINUE WHEN jsonb_typeof(_spec -> 'value') IS NULL OR jsonb_typeof(_spec -> 'value') = 'null';
        _op := _spec ->> 'passes_when';
        _value := _cert.statistics -> _name;
        IF _op = '==' THEN
            _ok := jsonb_typeof(_value) = 'boolean' AND _value = _spec -> 'value';
        ELSIF jsonb_typeof(_value) = 'number' AND _op IN ('<', '>') THEN
            _ok := CASE _op WHEN '>' THEN (_value #>> '{}')::numeric > (_spec ->> 'value')::numeric
                            ELSE (_value #>> '{}')::numeric < (_spec ->> 'value')::numeric END;
        ELSE
            _ok := false;
        END IF;
        IF NOT _ok THEN
            _failed := _failed || format('%s = %s (needs %s %s)', _name,
                CASE WHEN jsonb_typeof(_value) = 'number' THEN round((_value #>> '{}')::numeric, 4)::float8::text
                     ELSE coalesce(_value #>> '{}', 'none') END,
                _op, _spec ->> 'value');
        END IF;
    END LOOP;
    IF cardinality(_failed) > 0 THEN
        RETURN format('session #%s trades real money on %s and certificate #%s of strategy #%s failed: %s',
                      _session, _exchange, _cert.id, _strategy, array_to_string(_failed, ', '));
    END IF;
    IF _cert.data_end < now() - _policy.max_data_age THEN
        RETURN format('session #%s trades real money on %s and certificate #%s of strategy #%s is on data '
                      'ending %s, older than the maximum age of %s; request a new one on recent data',
                      _session, _exchange, _cert.id, _strategy,
                      to_char(_cert.data_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), _policy.max_data_age);
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION certificate_refusal(bigint, bigint, text, bigint, text) FROM PUBLIC;

CREATE FUNCTION certificate_gate_raise(_refusal text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF _refusal IS NOT NULL THEN
        RAISE EXCEPTION 'certificate gate: %', _refusal USING ERRCODE = 'check_violation';
    END IF;
END $$;

CREATE FUNCTION live_notebooks_gate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE _s record;
BEGIN
    IF NEW.status = 'active' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'active'
            OR (OLD.tenant_id, OLD.session_id) IS DISTINCT FROM (NEW.tenant_id, NEW.session_id)) THEN
        SELECT t.exchange, t.strategy_id, strategy_fingerprint(s.template, s.params, s.risk_limits) AS fingerprint
            INTO _s FROM public.trading_sessions t
            JOIN public.strategies s ON s.tenant_id = t.tenant_id AND s.id = t.strategy_id
            WHERE t.tenant_id = NEW.tenant_id AND t.id = NEW.session_id;
        IF FOUND THEN
            PERFORM public.certificate_gate_raise(public.certificate_refusal(
                NEW.tenant_id, NEW.session_id, _s.exchange, _s.strategy_id, _s.fingerprint));
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certificate_gate BEFORE INSERT OR UPDATE ON live_notebooks
    FOR EACH ROW EXECUTE FUNCTION live_notebooks_gate();

CREATE FUNCTION trading_sessions_gate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF (NEW.exchange, NEW.strategy_id) IS DISTINCT FROM (OLD.exchange, OLD.strategy_id)
            AND EXISTS (SELECT 1 FROM public.live_notebooks l
                        WHERE l.tenant_id = NEW.tenant_id AND l.session_id = NEW.id AND l.status = 'active') THEN
        PERFORM public.certificate_gate_raise(public.certificate_refusal(
            NEW.tenant_id, NEW.id, NEW.exchange, NEW.strategy_id,
            (SELECT strategy_fingerprint(s.template, s.params, s.risk_limits) FROM public.strategies s
             WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.strategy_id)));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certificate_gate BEFORE UPDATE ON trading_sessions
    FOR EACH ROW EXECUTE FUNCTION trading_sessions_gate();

CREATE FUNCTION strategies_gate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE _t record;
BEGIN
    IF (NEW.template, NEW.params, NEW.risk_limits) IS DISTINCT FROM (OLD.template, OLD.params, OLD.risk_limits) THEN
        FOR _t IN SELECT t.id, t.exchange FROM public.trading_sessions t
                  JOIN public.live_notebooks l ON l.tenant_id = t.tenant_id AND l.session_id = t.id
                  WHERE t.tenant_id = NEW.tenant_id AND t.strategy_id = NEW.id AND l.status = 'active' LOOP
            PERFORM public.certificate_gate_raise(public.certificate_refusal(
                NEW.tenant_id, _t.id, _t.exchange, NEW.id,
                strategy_fingerprint(NEW.template, NEW.params, NEW.risk_limits)));
        END LOOP;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certificate_gate BEFORE UPDATE ON strategies
    FOR EACH ROW EXECUTE FUNCTION strategies_gate();

CREATE FUNCTION certificate_requests_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.status := 'pending';
    NEW.message := NULL;
    NEW.certificate_id := NULL;
    NEW.started_at := NULL;
    NEW.finished_at := NULL;
    NEW.created_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER certificate_requests_pending BEFORE INSERT ON certificate_requests
    FOR EACH ROW EXECUTE FUNCTION certificate_requests_pending();
"""


def upgrade() -> None:
    op.create_table(
        "certificate_policy",
        sa.Column("id", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("thresholds", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_data_age", sa.Interval(), server_default=sa.text("'30 days'::interval"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_certificate_policy_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_policy")),
    )
    op.execute(f"INSERT INTO certificate_policy (id, thresholds) VALUES (1, '{DEFAULT_THRESHOLDS}'::jsonb)")
    set_tenant_privileges(op.get_bind(), "certificate_policy", "SELECT")
    op.create_table(
        "strategy_certificates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("strategy_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("data_sha256", sa.Text(), nullable=False),
        sa.Column("data_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bars", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("statistics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("thresholds", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("certificate", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_strategy_certificates_tenant_id")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "strategy_id"],
            ["strategies.tenant_id", "strategies.id"],
            name=op.f("fk_strategy_certificates_tenant_id_strategy_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_certificates")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_strategy_certificates_tenant_id_id")),
    )
    op.create_index(
        op.f("ix_strategy_certificates_tenant_id_strategy_id"), "strategy_certificates", ["tenant_id", "strategy_id"]
    )
    tenant_table("strategy_certificates", "SELECT")
    op.create_table(
        "certificate_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("strategy_id", sa.BigInteger(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column(
            "options", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("certificate_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_certificate_requests_status")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_certificate_requests_tenant_id")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "strategy_id"],
            ["strategies.tenant_id", "strategies.id"],
            name=op.f("fk_certificate_requests_tenant_id_strategy_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_requests")),
    )
    op.create_index(op.f("ix_certificate_requests_status"), "certificate_requests", ["status"])
    tenant_table("certificate_requests", "SELECT, INSERT")
    driver(op.get_bind()).execute(_FUNCTIONS)  # no parameters: psycopg sends it as one script


def downgrade() -> None:
    op.execute("DROP TRIGGER certificate_gate ON strategies")
    op.execute("DROP TRIGGER certificate_gate ON trading_sessions")
    op.execute("DROP TRIGGER certificate_gate ON live_notebooks")
    op.execute("DROP FUNCTION strategies_gate()")
    op.execute("DROP FUNCTION trading_sessions_gate()")
    op.execute("DROP FUNCTION live_notebooks_gate()")
    op.execute("DROP FUNCTION certificate_gate_raise(text)")
    op.execute("DROP FUNCTION certificate_refusal(bigint, bigint, text, bigint, text)")
    op.execute("DROP FUNCTION strategy_fingerprint(text, jsonb, jsonb)")
    forget_tenant_table("certificate_requests")
    op.drop_table("certificate_requests")  # its insert trigger goes with it
    op.execute("DROP FUNCTION certificate_requests_pending()")
    forget_tenant_table("strategy_certificates")
    op.drop_table("strategy_certificates")
    forget_tenant_table("certificate_policy")
    op.drop_table("certificate_policy")
