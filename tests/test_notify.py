"""workbench.notify: channels sealed by the vault, events written with what caused them, delivery
by the workers through the real transports to loopback servers (Telegram Bot API, a webhook
receiver checking signatures, aiosmtpd), with 429/retry_after, 5xx, timeouts, rate limits and
a channel that keeps failing. PostgreSQL is real (both test servers); the clock of a delivery
pass is moved by passing ``now`` instead of sleeping.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from hub_harness import free_port
from loopback_notify import SmtpServer, TelegramBotApi, WebhookReceiver
from sqlalchemy import delete, select, update

import workbench as wb
from workbench import store, vault
from workbench.cli import main
from workbench.errors import NotifyError, VaultError
from workbench.live import _sessions, _tick
from workbench.notify import _channels, _transport
from workbench.notify._delivery import Policy, deliver, has_due
from workbench.notify._http import ALLOW_PRIVATE_ENV
from workbench.notify._outbox import emit
from workbench.notify._transport import Setting, Transport, register
from workbench.store.models import (
    Fill,
    LiveNotebook,
    NotebookRun,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
    Order,
    TradingSession,
)

UTC = UTC
BRISK = {"entry_window": 5, "exit_window": 3, "direction": "both", "position_size": 0.5}  # trades often
FAST = Policy(timeout=0.5, backoff=1.0, max_backoff=60.0)


@pytest.fixture
def db(database, monkeypatch):
    """The session's database as tenant 'local' in single-user mode; loopback receivers allowed;
    no channel from before the test (other modules' tests share the worker's database) and none
    outlives it (other tests' sessions would notify it)."""
    vault.use(None)
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    _forget_channels()
    yield database
    _forget_channels()


def _forget_channels() -> None:
    with store.owner_session() as s:
        s.execute(delete(NotificationChannel))
        s.execute(delete(NotificationEvent))


@pytest.fixture
def telegram():
    with TelegramBotApi(f"{secrets.randbelow(10**9)}:AA{secrets.token_urlsafe(24)}", "424242") as server:
        yield server


def _telegram_channel(server: TelegramBotApi, name: str = "phone", **options) -> int:
    return wb.notify.add_telegram(name, server.token, server.chat_id, api_url=server.base, **options)


def _deliveries(channel: int) -> list[NotificationDelivery]:
    with store.owner_session() as s:
        return list(
            s.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.channel_id == channel)
                .order_by(NotificationDelivery.id)
            )
        )


def _channel(channel: int) -> NotificationChannel:
    with store.owner_session() as s:
        return s.get(NotificationChannel, channel)


def _events(session_id: int | None = None) -> list[NotificationEvent]:
    with store.owner_session() as s:
        query = select(NotificationEvent).order_by(NotificationEvent.id)
        if session_id is not None:
            query = query.where(NotificationEvent.session_id == session_id)
        return list(s.scalars(query))


def _paper_session(name: str, bars: int, **settings) -> int:
    candles = wb.load_candles().iloc[:bars]
    wb.save_strategy(name, "channel", BRISK, settings.pop("risk", None))
    end = candles.index[-1] + pd.Timedelta(hours=1)
    return wb.live.create_session(
        name, exchange="paper", replay_from=str(candles.index[1]), replay_end=str(end), **settings
    )


# -- channels ---------------------------------------------------------------------------------


def test_channel_secrets_are_sealed_bound_to_their_row_and_tenants_stay_apart(db, telegram):
    token, url_token, signing, password = (secrets.token_hex(12) for _ in range(4))
    alice, bob = (store.create_tenant(f"{who}{secrets.token_hex(3)}") for who in ("alice", "bob"))
    admin = _channels.Admin(alice.name)
    tg = admin.add("telegram", "phone", {"bot_token": f"12345:{token}", "chat_id": 42}, None, None, None)
    hook = admin.add(
        "webhook",
        "ops",
        {"url": f"https://hooks.example.com/T0/{url_token}", "signing_secret": signing},
        ["risk.breached"],
        None,
        5,
    )
    mail = admin.add(
        "email",
        "desk",
        {
            "host": "smtp.example.com",
            "sender": "bot@example.com",
            "to": "a@example.com, b@example.com",
            "username": "bot",
            "password": password,
        },
        "all",
        None,
        None,
    )
    with store.owner_session() as s:
        rows = {
            r.id: r for r in s.scalars(select(NotificationChannel).where(NotificationChannel.tenant_id == alice.id))
        }
        for plain in (token, url_token, signing, password):
            assert all(plain.encode() not in bytes(r.secret_ct) and plain not in str(r.config) for r in rows.values())
        assert rows[mail].config["to"] == ["a@example.com", "b@example.com"] and rows[hook].rate_limit == 5
        assert rows[hook].events == ["risk.breached"] and "order.placed" not in rows[tg].events
        assert _channels.open_secrets(admin.vault, s, rows[hook]) == {
            "url": vault.Secret(f"https://hooks.example.com/T0/{url_token}"),
            "signing_secret": vault.Secret(signing),
        }
        rows[tg].secret_ct = rows[mail].secret_ct  # a ciphertext copied onto another row does not open
        with pytest.raises(VaultError, match="does not decrypt"):
            _channels.open_secrets(admin.vault, s, rows[tg])
        s.rollback()
    with store.tenant_session(alice.name) as s:
        listed = _channels.listing(s)
    assert list(listed["target"]) == [
        "chat 42",
        "https://hooks.example.com/…",
        "a@example.com, b@example.com via smtp.example.com:587",
    ]
    assert token not in listed.to_string() and url_token not in listed.to_string()

    with store.owner_session() as s:  # an event of alice's, for bob to aim at
        emit(s, alice.id, None, "message", "m1", {"text": "hi"})
    url = db.server.libpq_url(store.tenant_url(bob.name))
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("notification_channels", "notification_events", "notification_deliveries"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        assert conn.execute("SELECT notification_emit(%s, NULL, 'message', 'm2', '{}')", [alice.id]).fetchone() == (
            None,
        )
        for statement, error in [
            ("UPDATE notification_channels SET enabled = false", psycopg.errors.InsufficientPrivilege),
            (
                "INSERT INTO notification_channels (name, kind) VALUES ('x', 'webhook')",
                psycopg.errors.InsufficientPrivilege,
            ),
            ("UPDATE notification_deliveries SET status = 'sent'", psycopg.errors.InsufficientPrivilege),
            (
                f"INSERT INTO notification_events (tenant_id, kind, dedup_key) VALUES ({alice.id}, 'message', 'x')",
                psycopg.errors.InsufficientPrivilege,
            ),
        ]:
            with pytest.raises(error):
                conn.execute(statement)
    assert [e.dedup_key for e in _events() if e.tenant_id == alice.id] == ["m1"]


def test_bad_channels_are_refused_with_what_is_wrong(db, telegram):
    _telegram_channel(telegram)
    other = store.create_tenant(f"carol{secrets.token_hex(3)}")
    with store.owner_session() as s:  # a session of another tenant
        strategy = wb.store.Strategy(tenant_id=other.id, name="x", template="channel")
        s.add(strategy)
        s.flush()
        foreign = TradingSession(tenant_id=other.id, strategy_id=strategy.id, exchange="paper", symbol="BTC/USD")
        s.add(foreign)
        s.flush()
    cases = [
        (
            lambda: wb.notify.add_channel("pager", "p"),
            "no notification transport 'pager'; the transports are telegram, webhook, email",
        ),
        (lambda: wb.notify.add_telegram("t", "123:abc", ""), "a telegram channel needs chat_id"),
        (lambda: wb.notify.add_telegram("t", "not a token", 5), "bot_token does not look like a Telegram bot token"),
        (lambda: wb.notify.add_telegram("t", "123:abc", "chat 5"), "chat_id 'chat 5' is neither"),
        (lambda: wb.notify.add_webhook("w", "ftp://example.com/x"), "url must be an https://"),
        (
            lambda: wb.notify.add_email("e", "smtp.example.com", "bot@example.com", "me", port=25),
            "'me' is not an e-mail address",
        ),
        (lambda: wb.notify.add_email("e", "h", "bot@example.com", "me@example.com", port="x"), "port 'x' is not"),
        (
            lambda: wb.notify.add_email("e", "h", "b@example.com", "m@example.com", security="tls"),
            "security 'tls': choose one of starttls, ssl, none",
        ),
        (
            lambda: wb.notify.add_email("e", "h", "b@example.com", "m@example.com", password="pw"),
            "give both username and password",
        ),
        (
            lambda: wb.notify.add_webhook("w", "https://example.com/x", colour="red"),
            "a webhook channel has no setting 'colour'",
        ),
        (
            lambda: wb.notify.add_webhook("w", "https://example.com/x", events=["order.filed"]),
            "no event kind 'order.filed'",
        ),
        (lambda: wb.notify.add_webhook("w", "https://example.com/x", rate_limit=0), "rate_limit 0 must be"),
        (
            lambda: wb.notify.add_webhook("w", "https://example.com/x", session=foreign.id),
            f"no trading session #{foreign.id}",
        ),
        (lambda: wb.notify.add_webhook("phone", "https://example.com/x"), "name 'phone' is already used"),
        (lambda: wb.notify.test("nope"), "no notification channel 'nope'"),
        (lambda: wb.notify.subscribe("phone", events=[]), "must want at least one event kind"),
    ]
    for attempt, message in cases:
        with pytest.raises(NotifyError) as info:
            attempt()
        assert message in str(info.value)
    assert list(wb.notify.channels()["name"]) == ["phone"]


# -- events -----------------------------------------------------------------------------------


def test_ticks_file_each_event_once_in_the_transaction_that_caused_it(db, monkeypatch, telegram):
    sid = _paper_session("notified", 60)
    _telegram_channel(telegram, events="all")
    wb.live.start(sid)
    hits = {"n": 0}

    def crash_once(point, leg=None):  # the process dies right after an order was accepted
        if point == "after_send":
            hits["n"] += 1
            if hits["n"] == 3:
                raise RuntimeError("crash")

    monkeypatch.setattr(_tick, "checkpoint", crash_once)
    for _ in range(200):
        try:
            report = wb.live.tick(sid)
        except RuntimeError:
            continue
        if report.skipped:
            break
    assert hits["n"] >= 3 and wb.live.status(sid).status == "stopped"  # the replay ended

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.session() as s:  # a status change rolled back notifies nobody
        s.execute(update(TradingSession).where(TradingSession.id == sid).values(status="running"))
        raise Boom

    events = _events(sid)
    with store.owner_session() as s:
        orders = list(s.scalars(select(Order).where(Order.session_id == sid)))
        fills = s.execute(select(Fill.ts).join(Order, Order.id == Fill.order_id).where(Order.session_id == sid)).all()
    by_kind = Counter(e.kind for e in events)
    assert [e.kind for e in events if e.kind.startswith("session.")] == ["session.started", "session.stopped"]
    assert events[-1].data["message"] == "the replay reached the end of its candles"
    placed = Counter(e.data["order_id"] for e in events if e.kind == "order.placed")
    assert placed == Counter(o.id for o in orders if o.exchange_order_id and o.leg != "exchange")
    filled = Counter(e.data["order_id"] for e in events if e.kind == "order.filled")
    assert filled == Counter(o.id for o in orders if o.status == "closed" and o.filled > 0)
    assert by_kind["order.filled"] >= 5  # each order once: the Counters above hold one per order
    summaries = [e.data for e in events if e.kind == "daily.summary"]
    assert len(summaries) == 2  # 60 hourly candles: two whole UTC days
    first = summaries[0]
    assert first["trades"] == sum(1 for (ts,) in fills if ts.date().isoformat() == first["day"])
    assert len(_deliveries(_channel_id("phone"))) == len(events)  # one per event for the one channel


def _channel_id(name: str) -> int:
    return int(wb.notify.channels().reset_index().set_index("name").loc[name, "id"])


def test_risk_breaches_errors_and_failed_runs_say_what_happened(db, telegram):
    sid = _paper_session("breaching", 30)
    _telegram_channel(telegram, events=["risk.breached", "session.error", "run.failed"], session=sid)
    wb.live.start(sid)
    breach = (
        "risk limit max_daily_loss 150 USD: today's loss is 170.00 USD (equity 9830.00 from 10000.00), "
        "20.00 USD over the limit; new orders stopped"
    )
    _sessions.mark_error(sid, breach)
    _sessions.mark_error(sid, "not running any more: no second event")
    wb.live.resume(sid)
    _sessions.mark_error(sid, "stopped trading because 3 ticks in a row failed; last error: ExchangeUnavailable")
    with store.owner_session() as s:
        session = s.get(TradingSession, sid)
        live = LiveNotebook(
            tenant_id=session.tenant_id, session_id=sid, source_path="live.ipynb", content="{}", schedule="candle:1h"
        )
        s.add(live)
        s.flush()
        run = NotebookRun(
            tenant_id=session.tenant_id,
            live_notebook_id=live.id,
            scheduled_for=datetime(2024, 5, 1, tzinfo=UTC),
            status="running",
        )
        s.add(run)
        s.flush()
    from workbench.scheduler._execute import Outcome, _record

    _record(run.id, Outcome("failed", "cell 3: ValueError: spread too wide", 3))
    _record(run.id, Outcome("failed", "recorded again: nothing new"))
    events = _events(sid)
    assert [e.kind for e in events] == ["risk.breached", "session.error", "run.failed"]
    assert events[0].data["limit"] == "max_daily_loss" and events[0].data["message"] == breach
    assert deliver(FAST).sent == 3
    texts = [m["text"] for m in telegram.messages]
    assert texts[0].startswith(f"Risk limit max_daily_loss breached, session #{sid}\nrisk limit max_daily_loss 150")
    assert "20.00 USD over the limit" in texts[0]
    assert texts[1].startswith(f"Session #{sid} stopped trading on an error\nbreaching")
    assert texts[2] == f"Run #{run.id} of session #{sid} failed in cell 3\ncell 3: ValueError: spread too wide"


# -- delivery ---------------------------------------------------------------------------------


def test_telegram_delivery_waits_out_429_and_retries_5xx_and_timeouts(db, telegram):
    phone = _telegram_channel(telegram)
    telegram.fail(429, retry_after=30)
    telegram.fail(502)
    telegram.delay(1.5)  # longer than the 0.5 s timeout
    event = wb.notify.send("hello through the faults")
    t0 = datetime.now(UTC)
    assert deliver(FAST, now=t0).retried == 1
    assert _channel(phone).paused_until == pytest.approx(t0 + timedelta(seconds=30), abs=timedelta(seconds=2))
    assert not has_due(t0 + timedelta(seconds=20)) and deliver(FAST, now=t0 + timedelta(seconds=20)).sent == 0
    assert deliver(FAST, now=t0 + timedelta(seconds=31)).retried == 1  # 502: again after 2 s (attempt 2)
    assert deliver(FAST, now=t0 + timedelta(seconds=32)).retried == 0  # not yet
    started = time.monotonic()
    assert deliver(FAST, now=t0 + timedelta(seconds=34)).retried == 1  # the timeout: again after 4 s
    assert time.monotonic() - started < 1.4
    assert deliver(FAST, now=t0 + timedelta(seconds=39)).sent == 1
    (delivery,) = _deliveries(phone)
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 4, None)
    assert [m["text"] for m in telegram.messages] == ["Message\nhello through the faults"]
    assert _channel(phone).failures == 0 and event is not None

    telegram.fail(503, times=5)  # a delivery gives up after max_attempts, saying why
    wb.notify.send("doomed")
    for seconds in (40, 50):
        deliver(Policy(timeout=0.5, backoff=1.0, max_attempts=2), now=t0 + timedelta(seconds=seconds))
    doomed = _deliveries(phone)[-1]
    assert (doomed.status, doomed.attempts, doomed.error) == ("failed", 2, "telegram answered 503: scripted 503")

    wrong = wb.notify.add_telegram(
        "wrong", "999:nottheone", telegram.chat_id, api_url=telegram.base, events=["message"]
    )
    wb.notify.send("to the wrong bot")
    deliver(FAST, now=t0 + timedelta(seconds=60))
    refused = _deliveries(wrong)[0]
    assert (refused.status, refused.attempts, refused.error) == ("failed", 1, "telegram answered 401: Unauthorized")
    with pytest.raises(
        NotifyError,
        match=r"channel 'wrong' \(telegram\): the test message was not delivered: "
        r"telegram answered 401: Unauthorized",
    ):
        wb.notify.test("wrong")


def test_each_channel_keeps_its_rate_limit(db, telegram):
    phone = _telegram_channel(telegram, rate_limit=3)
    for n in range(5):
        wb.notify.send(f"burst {n}")
    t0 = datetime.now(UTC)
    report = deliver(FAST, now=t0)
    assert (report.sent, report.postponed) == (3, 2)
    assert not has_due(t0 + timedelta(seconds=30))
    assert deliver(FAST, now=t0 + timedelta(seconds=61)).sent == 2
    assert [m["text"].split("\n")[1] for m in telegram.messages] == [f"burst {n}" for n in range(5)]
    assert all(d.status == "sent" for d in _deliveries(phone))


def test_a_transport_registered_by_name_is_used_and_its_failures_stay_its_own(db, telegram):
    class Pager(Transport):
        name = "pager"
        settings = (Setting("number", "Number"),)
        sent: list[str] = []

        def target(self, config):
            return f"pager {config['number']}"

        def send(self, message, config, secrets, timeout):
            if "boom" in message.text:
                raise ValueError("the pager exploded")
            self.sent.append(message.text)

    register(Pager())
    try:
        beeper = wb.notify.add_channel("pager", "beeper", number=555, events=["message"])
        _telegram_channel(telegram)
        assert wb.notify.channels().loc[beeper, "target"] == "pager 555"
        wb.notify.send("boom")
        wb.notify.send("hello")
        assert deliver(FAST).sent == 3  # the pager's bug did not stop the pass or the other channel
        assert Pager.sent == ["hello"] and len(telegram.messages) == 2
        assert _deliveries(beeper)[0].error == "the pager transport failed: ValueError: the pager exploded"
    finally:
        _transport._registry.pop("pager")
    wb.notify.send("no pager transport on this worker")
    deliver(FAST)
    assert (_deliveries(beeper)[-1].status, _deliveries(beeper)[-1].error) == (
        "failed",
        "the channel cannot be used: no notification transport 'pager'; the transports are telegram, webhook, email",
    )


def test_webhooks_are_signed_and_a_failing_channel_is_disabled_with_a_notice(db, monkeypatch):
    signing = secrets.token_hex(16)
    with (
        WebhookReceiver(f"/hooks/{secrets.token_hex(8)}", signing) as good,
        WebhookReceiver("/hooks/other", "the receiver's own secret") as picky,
    ):
        ops = wb.notify.add_webhook("ops", good.url, secret=signing)
        bad = wb.notify.add_webhook("misconfigured", picky.url, secret="not the receiver's secret")
        assert wb.notify.test("ops").startswith("sent a test message to 'ops' (http://127.0.0.1:")
        event = wb.notify.send("signed", key="once")
        assert wb.notify.send("signed", key="once") is None  # the same key is filed once
        wb.notify.send("second")
        report = deliver(Policy(timeout=0.5, disable_after=2))
        assert report.disabled == ["misconfigured"] and report.sent >= 2
        hook = good.received[1]
        assert hook["json"]["event"] == "message" and hook["json"]["data"] == {"text": "signed"}
        assert hook["json"]["id"] == hook["headers"]["X-Workbench-Delivery"] == f"wb-event-{event}"
        assert hook["headers"]["X-Workbench-Event"] == "message"
        deliver(Policy(timeout=0.5))  # the notice of the disabled channel goes to the good one
        notice = good.received[-1]["json"]
        assert notice["event"] == "channel.disabled" and notice["data"]["channel"] == "misconfigured"
        assert "disabled after 2 failed attempts in a row; last error: the webhook answered 401" in notice["text"]
        assert [d.status for d in _deliveries(bad)] == ["failed", "failed"]
        state = wb.notify.channels().loc[bad]
        assert not state["enabled"] and state["state"].startswith("disabled after 2 failed attempts")
        assert len(picky.requests) == 2 and not picky.received
        wb.notify.enable(bad)
        assert _channel(bad).enabled and _channel(bad).failures == 0

        monkeypatch.delenv(ALLOW_PRIVATE_ENV)  # by default the workers reach public addresses only
        with pytest.raises(
            NotifyError,
            match=f"127.0.0.1, which is not a public address; the operator allows "
            f"such hosts with {ALLOW_PRIVATE_ENV}=1",
        ):
            wb.notify.test(ops)
        assert ops not in {d.channel_id for d in _deliveries(bad)}


def test_email_goes_through_smtp_with_a_login_and_smtp_faults_are_judged(db):
    password = secrets.token_hex(12)
    with SmtpServer("bot", password) as smtp:
        common = dict(port=smtp.port, security="none", username="bot", events=["message"])
        desk = wb.notify.add_email(
            "desk", "127.0.0.1", "bot@example.com", "me@example.com, you@example.com", password=password, **common
        )
        wrong = wb.notify.add_email(
            "wrong", "127.0.0.1", "bot@example.com", "me@example.com", password="nope", **common
        )
        smtp.fail(451)
        smtp.delay(1.5)
        wb.notify.send("by mail")
        t0 = datetime.now(UTC)
        deliver(FAST, now=t0)
        assert [d.error for d in _deliveries(desk)] == ["127.0.0.1 answered 451 scripted failure"]
        assert (_deliveries(wrong)[0].status, _deliveries(wrong)[0].error) == (
            "failed",
            "127.0.0.1: login refused (535)",
        )
        deliver(FAST, now=t0 + timedelta(seconds=2))
        assert "did not answer within 0.5 s" in _deliveries(desk)[0].error
        deliver(FAST, now=t0 + timedelta(seconds=10))
        assert _deliveries(desk)[0].status == "sent"
        mail = smtp.messages[-1]
        assert mail["Subject"] == "[workbench] Message" and mail["To"] == "me@example.com, you@example.com"
        assert mail["X-Workbench-Event"] == "message" and "by mail" in mail.get_payload()
        smtp.fail(554)
        wb.notify.send("refused for good")
        deliver(FAST, now=t0 + timedelta(seconds=20))
        assert (_deliveries(desk)[-1].status, _deliveries(desk)[-1].error) == (
            "failed",
            "127.0.0.1 answered 554 scripted failure",
        )


def test_email_to_an_internal_host_is_refused_alike_for_open_and_closed_ports(db, monkeypatch):
    """The trusted side is no port scanner: with private hosts not allowed, an SMTP server that
    listens and a port that does not give the same answer, which names no port, and the
    server is never connected to."""
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)
    with SmtpServer("bot", "pw") as smtp:
        closed = free_port()
        errors = []
        for port in (smtp.port, closed, 22):
            channel = wb.notify.add_email(
                f"scan{port}",
                "localhost",
                "bot@example.com",
                "me@example.com",
                port=port,
                security="none",
                events=["message"],
            )
            with pytest.raises(NotifyError) as refused:
                wb.notify.test(channel)
            errors.append(str(refused.value).replace(f"scan{port}", "scan"))
        assert len(set(errors)) == 1 and "not a public address" in errors[0], errors
        assert not any(str(port) in errors[0] for port in (smtp.port, closed)) and not smtp.messages


# -- notebooks, command line, dashboard, worker -------------------------------------------------


def test_form_cli_and_dashboard(db, telegram, capsys):
    sid = _paper_session("watched", 30)
    form = wb.notify.form()
    box = form.children[0]
    fields = {getattr(w, "description", ""): w for w in box.children if hasattr(w, "description")}
    fields["Kind"].value = "telegram"
    fields["Name"].value = "from the form"
    settings = {w.description: w for w in box.children[2].children}
    assert type(settings["Bot token"]).__name__ == "Password"
    settings["Bot token"].value, settings["Chat id"].value = telegram.token, telegram.chat_id
    settings["Bot API URL"].value = telegram.base
    fields["Session"].value = sid
    fields["Add"].click()
    assert "Added telegram channel" in form.children[2].value and settings["Bot token"].value == ""
    chooser, test_button, remove_button = form.children[1].children
    assert chooser.options[-1][0] == "from the form (telegram)"
    test_button.click()
    assert "sent a test message to &#x27;from the form&#x27; (chat 424242)" in form.children[2].value
    assert telegram.messages[-1]["text"].startswith("Test message from workbench")
    channel = chooser.value
    assert wb.notify.channels().loc[channel, "session"] == f"#{sid}"

    wb.live.start(sid)
    wb.live.pause(sid)
    deliver(FAST)
    board = wb.dashboard(sid, refresh=None)
    assert "<h4>Notifications</h4>" in board.tables.value
    assert f"Session #{sid} paused" in board.tables.value and "from the form: sent" in board.tables.value
    assert list(wb.notify.notifications(session=sid)["kind"]) == ["session.paused", "session.started"]

    assert main(["notify", "list"]) == 0 and "from the form" in capsys.readouterr().out
    assert main(["notify", "test", str(channel)]) == 0 and "sent a test message" in capsys.readouterr().out
    assert main(["notify", "test", "nope"]) == 2
    assert "workbench notify: error: no notification channel 'nope'" in capsys.readouterr().err
    assert main(["notify", "deliver"]) == 0 and "0 sent" in capsys.readouterr().out
    remove_button.click()
    assert form.children[2].value == "<span>Removed.</span>" and wb.notify.channels().empty


@pytest.mark.slow
def test_a_worker_delivers_what_the_outbox_holds(db, telegram, tmp_path):
    if db.server.backend != "embedded":
        pytest.skip("a worker process runs against the embedded server only")
    _telegram_channel(telegram)
    wb.notify.send("through a real worker")
    env = {**os.environ, "WORKBENCH_DATABASE_URL": db.url, ALLOW_PRIVATE_ENV: "1"}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.cli",
                "worker",
                "--verbose",
                "--concurrency",
                "1",
                "--dispatch-interval",
                "0.2",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not telegram.messages and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(30)
    assert [m["text"] for m in telegram.messages] == ["Message\nthrough a real worker"], Path(
        tmp_path / "worker.log"
    ).read_text()[-2000:]
