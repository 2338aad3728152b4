"""Notifications: channels, the outbox of events, their deliveries, and the triggers that fill it.

Events are written by triggers, so each is in the transaction that caused it and nowhere
else: an order's row changing state (placed, filled, cancelled; a filled stop or take-profit
leg is a stop-loss or take-profit hit) in the tick's ledger transaction, a session's status
changing (started, paused, stopped, error; an error whose message is a risk-limit breach is
``risk.breached``), a run recorded failed, and the first equity snapshot of a new UTC day
(the previous day's summary). ``notification_emit`` files an event with one delivery per
channel that wants it, or nothing when none does; ``dedup_key`` is unique per tenant, so a
retried tick that repeats a state change files nothing twice. A trigger never fails the
transaction it rides on: an error in it becomes a warning and the event is lost, not the trade.

Tenants may read all three tables and add events and deliveries (their ticks' triggers run
as them); channels are written by the trusted side only, because their secrets are sealed
with the master key's data keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import driver, forget_tenant_table, tenant_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SESSION_FK = (["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"])

_FUNCTIONS = """
CREATE FUNCTION notification_subscribers(_tenant bigint, _kind text, _session bigint)
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM public.notification_channels
    WHERE tenant_id = _tenant AND enabled AND events ? _kind
      AND (session_id IS NULL OR _session IS NULL OR session_id = _session)
$$;

CREATE FUNCTION notification_emit(_tenant bigint, _session bigint, _kind text, _dedup text, _data jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE _event bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.notification_subscribers(_tenant, _kind, _session)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.notification_events (tenant_id, session_id, kind, dedup_key, data)
        VALUES (_tenant, _session, _kind, _dedup, _data)
        ON CONFLICT (tenant_id, dedup_key) DO NOTHING RETURNING id INTO _event;
    IF _event IS NOT NULL THEN
        INSERT INTO public.notification_deliveries (tenant_id, event_id, channel_id)
            SELECT _tenant, _event, channel FROM public.notification_subscribers(_tenant, _kind, _session) channel;
    END IF;
    RETURN _event;
END $$;

CREATE FUNCTION notification_emit_quietly(_tenant bigint, _session bigint, _kind text, _dedup text, _data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.notification_subscribers(_tenant, _kind, _session)) THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM public.notification_emit(_tenant, _session, _kind, _dedup, _data);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'workbench: notification % (%) not recorded: %', _kind, _dedup, SQLERRM;
    END;
END $$;

CREATE FUNCTION notify_session_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE _kind text;
BEGIN
    _kind := CASE NEW.status
        WHEN 'running' THEN 'session.started'
        WHEN 'paused' THEN 'session.paused'
        WHEN 'stopped' THEN 'session.stopped'
        ELSE CASE WHEN NEW.status_message LIKE 'risk limit %' THEN 'risk.breached' ELSE 'session.error' END
    END;
    PERFORM public.notification_emit_quietly(NEW.tenant_id, NEW.id, _kind,
        _kind || ':' || NEW.id || ':' || pg_current_xact_id(),
        jsonb_build_object('status', NEW.status, 'from', OLD.status, 'message', NEW.status_message,
                           'resumed', OLD.started_at IS NOT NULL, 'symbol', NEW.symbol, 'exchange', NEW.exchange,
                           'limit', substring(NEW.status_message FROM '^risk limit (\\S+)'),
                           'strategy', (SELECT name FROM public.strategies WHERE id = NEW.strategy_id)));
    RETURN NULL;
END $$;

CREATE FUNCTION notify_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _data jsonb;
    _was_placed boolean := TG_OP = 'UPDATE' AND OLD.exchange_order_id IS NOT NULL;
    _old_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
BEGIN
    _data := jsonb_build_object('order_id', NEW.id, 'client_order_id', NEW.client_order_id, 'leg', NEW.leg,
        'side', NEW.side, 'type', NEW.type, 'amount', NEW.amount::text, 'filled', NEW.filled::text,
        'price', NEW.price::text, 'average', NEW.average::text, 'status', NEW.status, 'candle_at', NEW.candle_at,
        'symbol', (SELECT symbol FROM public.trading_sessions WHERE id = NEW.session_id));
    IF NEW.exchange_order_id IS NOT NULL AND NOT _was_placed AND NEW.leg IS DISTINCT FROM 'exchange' THEN
        PERFORM public.notification_emit_quietly(NEW.tenant_id, NEW.session_id, 'order.placed',
                                                 'order.placed:' || NEW.id, _data);
    END IF;
    IF NEW.status IS DISTINCT FROM _old_status THEN
        IF NEW.status = 'closed' AND NEW.filled > 0 THEN
            PERFORM public.notification_emit_quietly(NEW.tenant_id, NEW.session_id,
                CASE WHEN NEW.leg = 'stop' THEN 'stop_loss.hit' WHEN NEW.leg ~ '^tp[0-9]+$' THEN 'take_profit.hit'
                     ELSE 'order.filled' END,
                'order.filled:' || NEW.id, _data);
        ELSIF NEW.status IN ('canceled', 'expired', 'rejected') AND NEW.exchange_order_id IS NOT NULL THEN
            PERFORM public.notification_emit_quietly(NEW.tenant_id, NEW.session_id, 'order.cancelled',
                                                     'order.cancelled:' || NEW.id, _data);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION notify_run_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.notification_emit_quietly(NEW.tenant_id,
        (SELECT session_id FROM public.live_notebooks WHERE id = NEW.live_notebook_id), 'run.failed',
        'run.failed:' || NEW.id,
        jsonb_build_object('run_id', NEW.id, 'scheduled_for', NEW.scheduled_for, 'failing_cell', NEW.failing_cell,
                           'error', left(NEW.error, 2000)));
    RETURN NULL;
END $$;

CREATE FUNCTION notify_daily_summary() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _previous timestamptz;
    _day date;
    _from timestamptz;
    _start numeric;
    _end record;
    _fills record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.notification_subscribers(NEW.tenant_id, 'daily.summary', NEW.session_id)) THEN
        RETURN NULL;
    END IF;
    SELECT max(ts) INTO _previous FROM public.equity_snapshots WHERE session_id = NEW.session_id AND ts < NEW.ts;
    IF _previous IS NULL OR (_previous AT TIME ZONE 'UTC')::date >= (NEW.ts AT TIME ZONE 'UTC')::date THEN
        RETURN NULL;  -- not the first snapshot of a new day
    END IF;
    _day := (_previous AT TIME ZONE 'UTC')::date;
    _from := _day::timestamp AT TIME ZONE 'UTC';
    BEGIN
        SELECT equity, pnl, position INTO _end FROM public.equity_snapshots
            WHERE session_id = NEW.session_id AND ts = _previous;
        SELECT equity INTO _start FROM public.equity_snapshots
            WHERE session_id = NEW.session_id AND ts < _from ORDER BY ts DESC LIMIT 1;
        IF _start IS NULL THEN  -- the session's first day: from its first snapshot
            SELECT equity INTO _start FROM public.equity_snapshots
                WHERE session_id = NEW.session_id AND ts >= _from ORDER BY ts LIMIT 1;
        END IF;
        SELECT count(*) AS trades, coalesce(sum(f.fee), 0) AS fees INTO _fills
            FROM public.fills f JOIN public.orders o ON o.id = f.order_id
            WHERE o.session_id = NEW.session_id AND f.ts >= _from AND f.ts < _from + interval '1 day';
        PERFORM public.notification_emit(NEW.tenant_id, NEW.session_id, 'daily.summary',
            'daily.summary:' || NEW.session_id || ':' || _day,
            jsonb_build_object('day', _day, 'equity', _end.equity::text, 'pnl', (_end.equity - _start)::text,
                               'total_pnl', _end.pnl::text, 'position', _end.position::text,
                               'trades', _fills.trades, 'fees', _fills.fees::text,
                               'symbol', (SELECT symbol FROM public.trading_sessions WHERE id = NEW.session_id)));
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'workbench: daily summary of session % not recorded: %', NEW.session_id, SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE TRIGGER notify_status AFTER UPDATE OF status ON trading_sessions FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION notify_session_status();
CREATE TRIGGER notify_placed AFTER INSERT ON orders FOR EACH ROW
    WHEN (NEW.exchange_order_id IS NOT NULL OR NEW.status <> 'new') EXECUTE FUNCTION notify_order();
CREATE TRIGGER notify_changed AFTER UPDATE ON orders FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.exchange_order_id IS DISTINCT FROM NEW.exchange_order_id)
    EXECUTE FUNCTION notify_order();
CREATE TRIGGER notify_failed AFTER UPDATE OF status ON notebook_runs FOR EACH ROW
    WHEN (NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed') EXECUTE FUNCTION notify_run_failed();
CREATE TRIGGER notify_daily AFTER INSERT ON equity_snapshots FOR EACH ROW EXECUTE FUNCTION notify_daily_summary();
"""

_DROP = """
DROP TRIGGER notify_daily ON equity_snapshots;
DROP TRIGGER notify_failed ON notebook_runs;
DROP TRIGGER notify_changed ON orders;
DROP TRIGGER notify_placed ON orders;
DROP TRIGGER notify_status ON trading_sessions;
DROP FUNCTION notify_daily_summary();
DROP FUNCTION notify_run_failed();
DROP FUNCTION notify_order();
DROP FUNCTION notify_session_status();
DROP FUNCTION notification_emit_quietly(bigint, bigint, text, text, jsonb);
DROP FUNCTION notification_emit(bigint, bigint, text, text, jsonb);
DROP FUNCTION notification_subscribers(bigint, text, bigint);
"""


def upgrade() -> None:
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("config", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=True),
        sa.Column("data_key_version", sa.Integer(), nullable=True),
        sa.Column("events", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rate_limit", sa.Integer(), server_default=sa.text("20"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint("name <> ''", name=op.f("ck_notification_channels_name")),
        sa.CheckConstraint("rate_limit > 0", name=op.f("ck_notification_channels_rate_limit")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "data_key_version"],
            ["tenant_data_keys.tenant_id", "tenant_data_keys.version"],
            name=op.f("fk_notification_channels_tenant_id_data_key_version"),
        ),
        sa.ForeignKeyConstraint(
            *_SESSION_FK, name=op.f("fk_notification_channels_tenant_id_session_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_notification_channels_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channels")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_notification_channels_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_notification_channels_tenant_id_name")),
    )
    tenant_table("notification_channels", "SELECT")
    op.create_table(
        "notification_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.ForeignKeyConstraint(
            *_SESSION_FK, name=op.f("fk_notification_events_tenant_id_session_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_notification_events_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_events")),
        sa.UniqueConstraint("tenant_id", "dedup_key", name=op.f("uq_notification_events_tenant_id_dedup_key")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_notification_events_tenant_id_id")),
    )
    op.create_index(op.f("ix_notification_events_session_id"), "notification_events", ["session_id"])
    tenant_table("notification_events", "SELECT, INSERT")
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), server_default=sa.text("current_tenant_id()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'skipped')", name=op.f("ck_notification_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "channel_id"],
            ["notification_channels.tenant_id", "notification_channels.id"],
            name=op.f("fk_notification_deliveries_tenant_id_channel_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "event_id"],
            ["notification_events.tenant_id", "notification_events.id"],
            name=op.f("fk_notification_deliveries_tenant_id_event_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_notification_deliveries_tenant_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("event_id", "channel_id", name=op.f("uq_notification_deliveries_event_id_channel_id")),
    )
    op.create_index(
        "ix_notification_deliveries_status_next_attempt_at", "notification_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_notification_deliveries_channel_id_last_attempt_at",
        "notification_deliveries",
        ["channel_id", "last_attempt_at"],
    )
    tenant_table("notification_deliveries", "SELECT, INSERT")
    driver(op.get_bind()).execute(_FUNCTIONS)  # no parameters: psycopg sends it as one script


def downgrade() -> None:
    driver(op.get_bind()).execute(_DROP)
    for table in ("notification_deliveries", "notification_events", "notification_channels"):
        forget_tenant_table(table)
        op.drop_table(table)
