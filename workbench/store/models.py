"""The tables, as SQLAlchemy 2 typed models; the Alembic migrations create exactly these.

Every table but ``tenants`` is tenant-owned: its ``tenant_id`` defaults to
``current_tenant_id()`` (the tenant whose role is connected), so tenant code inserts rows
without naming itself, and row-level security lets a tenant's role see and write only its
own rows. References between tenant-owned tables are composite ``(tenant_id, id)`` foreign
keys, so a row can never point at another tenant's row, even by guessing its id.

Money and quantities are ``Numeric`` (``decimal.Decimal`` in Python, never float); every
timestamp is ``timestamptz``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SESSION_STATUSES = ("running", "paused", "stopped", "error")
WIND_DOWN_POLICIES = ("flatten", "protect", "leave")  # what an ending session does with its position
PERMISSIONS = ("read", "trade")
ORDER_SIDES = ("buy", "sell")
ORDER_STATUSES = ("new", "open", "closed", "canceled", "expired", "rejected")
LIVE_NOTEBOOK_STATUSES = ("active", "paused", "stopped")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "skipped")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {
        int: BigInteger,
        str: Text,
        bool: Boolean,
        bytes: LargeBinary,
        Decimal: Numeric,
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
    }


def _id() -> Mapped[int]:
    return mapped_column(Identity(), primary_key=True)


def _created_at() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


class Tenant(Base):
    """A client of the workbench; ``role_name`` is its own PostgreSQL login role."""

    __tablename__ = "tenants"

    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(unique=True)
    role_name: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime] = _created_at()
    removed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        removed = f", removed_at={self.removed_at:%Y-%m-%d %H:%M}" if self.removed_at else ""
        return f"Tenant(id={self.id}, name={self.name!r}, role_name={self.role_name!r}{removed})"


class TenantTableGrant(Base):
    """The privileges tenant roles get on a tenant-owned table, recorded by the migration that
    creates the table and granted to every tenant role (see ``_rls.py``)."""

    __tablename__ = "tenant_table_grants"

    table_name: Mapped[str] = mapped_column(primary_key=True)
    privileges: Mapped[str]


class TenantOwned(Base):
    """Base of every tenant-owned table (abstract: adds the ``tenant_id`` column)."""

    __abstract__ = True

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), server_default=text("current_tenant_id()"))


class Strategy(TenantOwned):
    """A template plus one parameter set and risk limits. Once it has run live it is locked:
    the database refuses to change it, and editing means inserting a new ``version`` whose
    ``parent_id`` points here (clones point at their origin the same way)."""

    __tablename__ = "strategies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "name", "version"),
        ForeignKeyConstraint(
            ["tenant_id", "parent_id"], ["strategies.tenant_id", "strategies.id"], ondelete="SET NULL (parent_id)"
        ),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("name <> ''", name="name"),
    )

    id: Mapped[int] = _id()
    name: Mapped[str]
    template: Mapped[str]
    params: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    risk_limits: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    parent_id: Mapped[int | None]
    is_locked: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = _created_at()
    # the marketplace listing this strategy was cloned from (revision 0008)
    listing_id: Mapped[int | None] = mapped_column(ForeignKey("market_listings.id", ondelete="SET NULL"))


class TenantDataKey(TenantOwned):
    """A tenant's data key, wrapped (encrypted) by master key ``master_key_version``."""

    __tablename__ = "tenant_data_keys"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id"), primary_key=True, server_default=text("current_tenant_id()")
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    wrapped_key: Mapped[bytes]
    master_key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()


class ExchangeAccount(TenantOwned):
    """Exchange API credentials: ciphertexts under data key ``data_key_version`` only, plus a
    masked ``key_hint`` (e.g. ``ab12…9f``) to recognise the key by."""

    __tablename__ = "exchange_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "label"),
        ForeignKeyConstraint(
            ["tenant_id", "data_key_version"], ["tenant_data_keys.tenant_id", "tenant_data_keys.version"]
        ),
        _one_of("permissions", PERMISSIONS),
    )

    id: Mapped[int] = _id()
    exchange: Mapped[str]
    label: Mapped[str]
    permissions: Mapped[str] = mapped_column(server_default=text("'read'"))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    api_key_ct: Mapped[bytes]
    secret_ct: Mapped[bytes]
    passphrase_ct: Mapped[bytes | None]
    key_hint: Mapped[str]
    data_key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class TradingSession(TenantOwned):
    """One bot: a strategy trading a symbol on an exchange account (None: paper trading).
    Starting it live (``running`` with an account) locks the strategy."""

    __tablename__ = "trading_sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "strategy_id"], ["strategies.tenant_id", "strategies.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "exchange_account_id"], ["exchange_accounts.tenant_id", "exchange_accounts.id"]
        ),
        _one_of("status", SESSION_STATUSES),
        _one_of("wind_down_pending", WIND_DOWN_POLICIES),
        CheckConstraint("leverage > 0", name="leverage"),
    )

    id: Mapped[int] = _id()
    strategy_id: Mapped[int]
    exchange_account_id: Mapped[int | None]
    exchange: Mapped[str]
    symbol: Mapped[str]
    leverage: Mapped[Decimal] = mapped_column(server_default=text("1"))
    status: Mapped[str] = mapped_column(server_default=text("'stopped'"))
    status_message: Mapped[str | None]
    started_at: Mapped[datetime | None]
    current_balance: Mapped[Decimal | None]
    total_pnl: Mapped[Decimal] = mapped_column(server_default=text("0"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    # how workbench.live trades it (revision 0005)
    market_type: Mapped[str] = mapped_column(server_default=text("'spot'"))
    timeframe: Mapped[str] = mapped_column(server_default=text("'1h'"))
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    init_equity: Mapped[Decimal | None]  # the equity the session's simulation starts from
    history_from: Mapped[datetime | None]  # first candle the indicators read (warm-up)
    anchor_at: Mapped[datetime | None]  # first candle the session trades
    last_tick_at: Mapped[datetime | None]  # the candle of the last completed tick
    failed_ticks: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # in a row
    # the policy of a wind-down that could not secure the position, tried again on every run (0013)
    wind_down_pending: Mapped[str | None]


class Order(TenantOwned):
    """An order a session placed; ``client_order_id`` is deterministic per tick, so a retried
    tick finds its order instead of placing it twice. ``leg`` names its role in the tick."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("session_id", "client_order_id"),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
        _one_of("side", ORDER_SIDES),
        _one_of("status", ORDER_STATUSES),
    )

    id: Mapped[int] = _id()
    session_id: Mapped[int]
    client_order_id: Mapped[str]
    exchange_order_id: Mapped[str | None]
    side: Mapped[str]
    type: Mapped[str]
    price: Mapped[Decimal | None]
    amount: Mapped[Decimal]
    filled: Mapped[Decimal] = mapped_column(server_default=text("0"))
    status: Mapped[str] = mapped_column(server_default=text("'new'"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    candle_at: Mapped[datetime | None]  # the tick's candle (revision 0005)
    leg: Mapped[str | None]
    average: Mapped[Decimal | None]
    reduce_only: Mapped[bool] = mapped_column(server_default=text("false"))
    # revision 0012: when it was last sent, and how an unknown outcome was settled (or why
    # reconciliation wrote the row); see workbench/live/ORDERS.md
    sent_at: Mapped[datetime | None]
    resolution: Mapped[str | None]


class Fill(TenantOwned):
    """One exchange trade that (partly) filled an order; unique per order and trade id."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("order_id", "exchange_trade_id"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"),
    )

    id: Mapped[int] = _id()
    order_id: Mapped[int]
    exchange_trade_id: Mapped[str]
    price: Mapped[Decimal]
    amount: Mapped[Decimal]
    fee: Mapped[Decimal] = mapped_column(server_default=text("0"))
    fee_currency: Mapped[str | None]
    ts: Mapped[datetime]


class FundingPayment(TenantOwned):
    """Funding the exchange paid (positive) or charged (negative) on a session's perpetual
    position at one settlement; unique per session and the exchange's id of the payment."""

    __tablename__ = "funding_payments"
    __table_args__ = (
        UniqueConstraint("session_id", "exchange_payment_id"),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = _id()
    session_id: Mapped[int]
    exchange_payment_id: Mapped[str]
    amount: Mapped[Decimal]
    currency: Mapped[str | None]
    ts: Mapped[datetime]


class EquitySnapshot(TenantOwned):
    """A session's balance, equity, position and PnL at one moment."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (
        UniqueConstraint("session_id", "ts"),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = _id()
    session_id: Mapped[int]
    ts: Mapped[datetime]
    balance: Mapped[Decimal]
    equity: Mapped[Decimal]
    position: Mapped[Decimal] = mapped_column(server_default=text("0"))
    pnl: Mapped[Decimal] = mapped_column(server_default=text("0"))


class BacktestResult(TenantOwned):
    """Metrics of one backtest; ``candles`` describes the data (symbol, timeframe, range, source)."""

    __tablename__ = "backtest_results"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "strategy_id"], ["strategies.tenant_id", "strategies.id"], ondelete="SET NULL (strategy_id)"
        ),
    )

    id: Mapped[int] = _id()
    strategy_id: Mapped[int | None]
    template: Mapped[str]
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    candles: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created_at()


class LiveNotebook(TenantOwned):
    """A notebook promoted to run on ``schedule`` for a session: ``content`` is the frozen copy
    (notebook JSON) of ``source_path`` at promotion ``version``."""

    __tablename__ = "live_notebooks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("session_id", "version"),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
        _one_of("status", LIVE_NOTEBOOK_STATUSES),
    )

    id: Mapped[int] = _id()
    session_id: Mapped[int]
    source_path: Mapped[str]
    content: Mapped[str]
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    schedule: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=text("'active'"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    next_run_at: Mapped[datetime | None]  # the scheduler's next due time (None: not scheduled)


class NotebookRun(TenantOwned):
    """One scheduled execution (tick) of a live notebook; one per scheduled time."""

    __tablename__ = "notebook_runs"
    __table_args__ = (
        UniqueConstraint("live_notebook_id", "scheduled_for"),
        ForeignKeyConstraint(
            ["tenant_id", "live_notebook_id"], ["live_notebooks.tenant_id", "live_notebooks.id"], ondelete="CASCADE"
        ),
        _one_of("status", RUN_STATUSES),
    )

    id: Mapped[int] = _id()
    live_notebook_id: Mapped[int]
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(server_default=text("'queued'"))
    output_path: Mapped[str | None]
    error: Mapped[str | None]
    failing_cell: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    job_id: Mapped[int | None]  # the procrastinate job that executes it
    timings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))  # seconds per phase


class PaperAccountRow(TenantOwned):
    """A paper exchange account (``workbench.exchange.PaperAccount``): cash in ``currency``,
    the time its resting orders were matched up to, and a ``version`` bumped by every save
    (a save that finds another version lost a race and is refused)."""

    __tablename__ = "paper_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "account"),
    )

    id: Mapped[int] = _id()
    account: Mapped[str]
    currency: Mapped[str]
    cash: Mapped[Decimal]
    synced: Mapped[datetime | None]
    next_id: Mapped[int] = mapped_column(server_default=text("1"))
    version: Mapped[int] = mapped_column(server_default=text("1"))


def _paper_account_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", "account_id"], ["paper_accounts.tenant_id", "paper_accounts.id"], ondelete="CASCADE"
    )


class PaperPositionRow(TenantOwned):
    """The backtest engine's position slots of one symbol of a paper account."""

    __tablename__ = "paper_positions"
    __table_args__ = (_paper_account_fk(),)

    account_id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(primary_key=True)
    units: Mapped[Decimal]
    entry: Mapped[Decimal]
    margin: Mapped[Decimal]
    leverage: Mapped[Decimal]


class PaperOrderRow(TenantOwned):
    """An order of a paper account, every state (``id`` is the paper exchange's order id)."""

    __tablename__ = "paper_orders"
    __table_args__ = (_paper_account_fk(), _one_of("side", ORDER_SIDES), _one_of("status", ORDER_STATUSES))

    account_id: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(primary_key=True)
    client_order_id: Mapped[str | None]
    symbol: Mapped[str]
    side: Mapped[str]
    type: Mapped[str]
    amount: Mapped[Decimal]
    price: Mapped[Decimal | None]
    filled: Mapped[Decimal]
    average: Mapped[Decimal | None]
    status: Mapped[str]
    ts: Mapped[datetime | None]
    reduce_only: Mapped[bool] = mapped_column(server_default=text("false"))


class PaperFillRow(TenantOwned):
    """A fill of a paper account (``seq`` keeps them in the order they happened)."""

    __tablename__ = "paper_fills"
    __table_args__ = (_paper_account_fk(), UniqueConstraint("account_id", "seq"))

    account_id: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(primary_key=True)
    seq: Mapped[int]
    order_id: Mapped[str]
    client_order_id: Mapped[str | None]
    symbol: Mapped[str]
    side: Mapped[str]
    amount: Mapped[Decimal]
    price: Mapped[Decimal]
    fee: Mapped[Decimal]
    fee_currency: Mapped[str | None]
    ts: Mapped[datetime]
    taker: Mapped[bool | None]


# --- the strategy marketplace (revision 0008) ------------------------------------------------
# Shared between tenants, so keyed by tenant *name* (never reused) rather than tenant_id: a row
# names its author or grantee, and the policies in the migration decide who sees what.

LISTING_STATUSES = ("listed", "withdrawn")


class MarketListing(Base):
    """A published strategy: everything the catalogue shows, snapshotted at publication (the
    author's later edits to their own strategy change nothing here). Every tenant reads the
    ``listed`` ones; only the author (``author`` = the connected tenant) writes."""

    __tablename__ = "market_listings"
    __table_args__ = (
        _one_of("status", LISTING_STATUSES),
        CheckConstraint("name <> ''", name="name"),
        CheckConstraint("price >= 0", name="price"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = _id()
    author: Mapped[str] = mapped_column(ForeignKey("tenants.name"), server_default=text("current_tenant_name()"))
    name: Mapped[str]
    description: Mapped[str] = mapped_column(server_default=text("''"))
    template: Mapped[str]
    dataset: Mapped[str]  # the named data set the metrics were measured on
    dataset_info: Mapped[dict[str, Any]]  # symbol, timeframe, range, bars, source, sha256
    settings: Mapped[dict[str, Any]]  # the backtest's fees, slippage, initial cash...
    metrics: Mapped[dict[str, Any]]
    equity_curve: Mapped[dict[str, Any]]  # {"time": [epoch seconds], "equity": [...]}: the chart
    price: Mapped[Decimal] = mapped_column(server_default=text("0"))
    currency: Mapped[str] = mapped_column(server_default=text("'USD'"))
    status: Mapped[str] = mapped_column(server_default=text("'listed'"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    withdrawn_at: Mapped[datetime | None]


class MarketListingParams(Base):
    """What a clone copies: readable by the author, and by others only while the listing is
    listed and free or they hold an entitlement to it."""

    __tablename__ = "market_listing_params"

    listing_id: Mapped[int] = mapped_column(ForeignKey("market_listings.id", ondelete="CASCADE"), primary_key=True)
    params: Mapped[dict[str, Any]]
    risk_limits: Mapped[dict[str, Any]]


class MarketEntitlement(Base):
    """The right of tenant ``grantee`` to clone a paid listing, granted by the listing's author
    (``granted_by``) or by the operator (``granted_by`` NULL). No payment is processed here."""

    __tablename__ = "market_entitlements"

    listing_id: Mapped[int] = mapped_column(ForeignKey("market_listings.id", ondelete="CASCADE"), primary_key=True)
    grantee: Mapped[str] = mapped_column(ForeignKey("tenants.name"), primary_key=True)
    granted_by: Mapped[str | None] = mapped_column(server_default=text("current_tenant_name()"))
    created_at: Mapped[datetime] = _created_at()


# --- notifications (revision 0007) ------------------------------------------------------------

NOTIFICATION_DELIVERY_STATUSES = ("pending", "sent", "failed", "skipped")


class NotificationChannel(TenantOwned):
    """Where a tenant hears what its sessions do: a transport (``kind``: telegram, webhook,
    email, ...) with its settings in ``config``; the secret ones (bot token, webhook URL and
    signing secret, SMTP password) only as one ciphertext under the tenant's data key
    (``workbench.vault``). It wants the event kinds in ``events``, of session ``session_id``
    (None: of every session). ``failures`` counts failed attempts in a row; too many disable it."""

    __tablename__ = "notification_channels"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "name"),
        ForeignKeyConstraint(
            ["tenant_id", "data_key_version"], ["tenant_data_keys.tenant_id", "tenant_data_keys.version"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
        CheckConstraint("name <> ''", name="name"),
        CheckConstraint("rate_limit > 0", name="rate_limit"),
    )

    id: Mapped[int] = _id()
    name: Mapped[str]
    kind: Mapped[str]
    config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    secret_ct: Mapped[bytes | None]
    data_key_version: Mapped[int | None] = mapped_column(Integer)
    events: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    session_id: Mapped[int | None]
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    disabled_reason: Mapped[str | None]
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    paused_until: Mapped[datetime | None]  # a rate limit the far end asked for (429 retry_after)
    rate_limit: Mapped[int] = mapped_column(Integer, server_default=text("20"))  # messages per minute
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class NotificationEvent(TenantOwned):
    """The outbox: one thing that happened (``kind`` and its facts in ``data``), written by the
    transaction that caused it (the triggers of revision 0007), at most once per ``dedup_key``,
    and only when a channel wants it."""

    __tablename__ = "notification_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "dedup_key"),
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = _id()
    session_id: Mapped[int | None] = mapped_column(index=True)
    kind: Mapped[str]
    dedup_key: Mapped[str]
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created_at()


class NotificationDelivery(TenantOwned):
    """One event for one channel: ``pending`` until the workers send it (``attempts``, the next
    at ``next_attempt_at``), then ``sent``, ``failed`` (``error`` says why) or ``skipped``
    (its channel was disabled)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel_id"),
        ForeignKeyConstraint(
            ["tenant_id", "event_id"], ["notification_events.tenant_id", "notification_events.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "channel_id"],
            ["notification_channels.tenant_id", "notification_channels.id"],
            ondelete="CASCADE",
        ),
        _one_of("status", NOTIFICATION_DELIVERY_STATUSES),
        Index("ix_notification_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notification_deliveries_channel_id_last_attempt_at", "channel_id", "last_attempt_at"),
    )

    id: Mapped[int] = _id()
    event_id: Mapped[int]
    channel_id: Mapped[int]
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None]
    created_at: Mapped[datetime] = _created_at()


# --- what exchange keys may do, and the audit of their use (revision 0010) -------------------


class ExchangeKeyReview(TenantOwned):
    """The exchange's latest answer about an account's key: may it withdraw, is it restricted
    to IP addresses (None: the exchange could not tell), what else it may do, and the warning
    the tenant was shown ('' when none). Written by the trusted side only."""

    __tablename__ = "exchange_key_reviews"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["exchange_accounts.tenant_id", "exchange_accounts.id"], ondelete="CASCADE"
        ),
    )

    account_id: Mapped[int] = mapped_column(primary_key=True)
    can_withdraw: Mapped[bool | None]
    ip_restricted: Mapped[bool | None]
    abilities: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    warning: Mapped[str] = mapped_column(server_default=text("''"))
    reviewed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class KeyUseRecord(TenantOwned):
    """One use of an account's key by the trusted side (``purpose``: check, live run, ...), by
    ``actor`` (the process), for session ``session_id`` and run ``run_id`` when a run used it.
    Append-only: triggers refuse UPDATE, DELETE and TRUNCATE; tenants may only read theirs.
    No foreign key to the account, so the record outlives it."""

    __tablename__ = "key_use_audit"
    __table_args__ = (Index("ix_key_use_audit_tenant_id_used_at", "tenant_id", "used_at"),)

    id: Mapped[int] = _id()
    account_id: Mapped[int]
    exchange: Mapped[str]
    key_hint: Mapped[str]
    purpose: Mapped[str]
    actor: Mapped[str]
    session_id: Mapped[int | None]
    run_id: Mapped[int | None]
    used_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- dashboards shared read-only (revision 0011) ---------------------------------------------


class DashboardShare(TenantOwned):
    """Session ``session_id`` of ``owner`` (the tenant of the row) may be read by tenant
    ``viewer``: row-level security then shows the viewer that session, its equity, orders,
    fills and runs (read-only), and nothing else of the owner."""

    __tablename__ = "dashboard_shares"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "session_id"], ["trading_sessions.tenant_id", "trading_sessions.id"], ondelete="CASCADE"
        ),
        CheckConstraint("viewer <> owner", name="not_self"),
        Index("ix_dashboard_shares_viewer", "viewer"),
    )

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id"), primary_key=True, server_default=text("current_tenant_id()")
    )
    session_id: Mapped[int] = mapped_column(primary_key=True)
    viewer: Mapped[str] = mapped_column(ForeignKey("tenants.name"), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("tenants.name"), server_default=text("current_tenant_name()"))
    created_at: Mapped[datetime] = _created_at()


# --- the trial ledger of research runs (revision 0015) ----------------------------------------


class Trial(TenantOwned):
    """One research run of a tenant (``what``: sweep, walk_forward, cross_validate, validate):
    the strategy family it searched (a template's name, or a rule strategy's canonical text
    with its variables' names only), the data set (sha256 of the candles' OHLCV values, their
    first and last bar's open time and their count) and how many parameter combinations it
    tried. Summed per family and data set, the combinations are the trials a deflated Sharpe
    ratio of that search must count. Append-only: triggers refuse UPDATE, DELETE and TRUNCATE;
    tenants may read and add theirs."""

    __tablename__ = "trials"
    __table_args__ = (
        CheckConstraint("combinations >= 1", name="combinations"),
        CheckConstraint("bars >= 1", name="bars"),
        Index("ix_trials_tenant_id_data_hash", "tenant_id", "data_hash"),
    )

    id: Mapped[int] = _id()
    template: Mapped[str]
    family: Mapped[str]
    data_hash: Mapped[str]
    data_start: Mapped[datetime]
    data_end: Mapped[datetime]
    bars: Mapped[int]
    combinations: Mapped[int]
    what: Mapped[str]
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- certificates computed by the platform, and the gate of real-money notebooks (revision 0016) ----

CERTIFICATE_REQUEST_STATUSES = ("pending", "running", "done", "failed")


class CertificatePolicy(Base):
    """The operator's policy for real-money live notebooks, one row (``id`` 1), read by the
    certifying worker and by the database's gate: ``thresholds`` maps a check of the
    validation battery to ``{"value": ..., "passes_when": ">" | "<" | "=="}`` (a null value:
    shown, not checked), and a certificate's data may end at most ``max_data_age`` ago.
    Only the owner writes it; tenants may read it."""

    __tablename__ = "certificate_policy"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default=text("1"))
    thresholds: Mapped[dict[str, Any]]
    max_data_age: Mapped[timedelta] = mapped_column(Interval, server_default=text("'30 days'::interval"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class StrategyCertificate(TenantOwned):
    """The validation battery's verdict on one version of a strategy, computed by a trusted
    worker from the stored strategy and a named data set (never from a tenant's code).
    ``fingerprint`` is ``strategy_fingerprint(template, params, risk_limits)`` of what was
    validated; ``statistics`` and ``thresholds`` are those of the research certificate, and
    ``certificate`` the whole of it. Tenants may only read theirs; the owner writes them."""

    __tablename__ = "strategy_certificates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(
            ["tenant_id", "strategy_id"], ["strategies.tenant_id", "strategies.id"], ondelete="CASCADE"
        ),
        Index("ix_strategy_certificates_tenant_id_strategy_id", "tenant_id", "strategy_id"),
    )

    id: Mapped[int] = _id()
    strategy_id: Mapped[int]
    fingerprint: Mapped[str]
    template: Mapped[str]
    dataset: Mapped[str]
    data_sha256: Mapped[str]
    data_start: Mapped[datetime]
    data_end: Mapped[datetime]
    bars: Mapped[int]
    passed: Mapped[bool]
    statistics: Mapped[dict[str, Any]]
    thresholds: Mapped[dict[str, Any]]
    certificate: Mapped[dict[str, Any]]
    request_id: Mapped[int | None]
    created_at: Mapped[datetime] = _created_at()


class CertificateRequest(TenantOwned):
    """A tenant's request that the platform certify a strategy on data set ``dataset``
    (``options``: ``bars``, ``grid``, ``folds``, ``n_groups`` of the battery). Tenants insert
    (always as ``pending``: a trigger says so) and read theirs; the worker updates them."""

    __tablename__ = "certificate_requests"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "strategy_id"], ["strategies.tenant_id", "strategies.id"], ondelete="CASCADE"
        ),
        _one_of("status", CERTIFICATE_REQUEST_STATUSES),
        Index("ix_certificate_requests_status", "status"),
    )

    id: Mapped[int] = _id()
    strategy_id: Mapped[int]
    dataset: Mapped[str]
    options: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    message: Mapped[str | None]
    certificate_id: Mapped[int | None]
    created_at: Mapped[datetime] = _created_at()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
