"""``PostgresPaperStore``: paper accounts in the workbench database, one transaction per save.

The tables (migration 0005): ``paper_accounts`` (cash, currency, ``synced``, the next id
and a ``version``), ``paper_positions`` (the engine's float slots per symbol),
``paper_orders`` (every order, every state) and ``paper_fills`` (append-only, ``seq``
keeps their order). All are tenant-owned with forced row-level security, so a tenant's
process sees only its own paper accounts.

A paper exchange loads its account on every call, so loads are cheap: the store keeps the
last state it read or wrote per account and reads only the ``version`` while nobody else
saved (``exclusive=True``: not even that, for a caller that holds the account alone, e.g. a
live tick under its session's lock). ``since`` bounds what is read to the open orders and
the orders and fills from that time on (a live tick needs nothing older), so reading stays
as fast on the thousandth tick as on the first. A save writes only what changed (new fills,
changed orders and positions) and refuses, with ``ExchangeError``, when another process
saved in between.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from workbench.errors import ExchangeError
from workbench.exchange._paper_store import PaperAccount, PaperPosition, PaperStore
from workbench.exchange._types import Fill, Order


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


@dataclass
class _Seen:
    """An account as this store last read or wrote it."""

    id: int
    version: int
    state: PaperAccount
    skipped_fills: int = 0  # older fills not read (``since``): the first read fill's sequence number


class PostgresPaperStore(PaperStore):
    """Paper accounts in PostgreSQL; ``session`` opens a transaction (default: the tenant's
    ``workbench.store.session``); ``exclusive``: no other process writes these accounts meanwhile."""

    def __init__(
        self,
        session: Callable[[], AbstractContextManager[Session]] | None = None,
        *,
        exclusive: bool = False,
        since: datetime | None = None,
    ) -> None:
        if session is None:
            from workbench.store import session
        self._session = cast(Callable[[], AbstractContextManager[Session]], session)  # not None: set above
        self._exclusive, self._since = exclusive, since
        self._seen: dict[str, _Seen] = {}

    def load(self, account: str) -> PaperAccount | None:
        from workbench.store import PaperAccountRow

        if self._exclusive and account in self._seen:
            return self._seen[account].state.copy()
        with self._session() as scope:
            row = scope.execute(
                select(PaperAccountRow.id, PaperAccountRow.version).where(PaperAccountRow.account == account)
            ).first()
            if row is None:
                self._seen.pop(account, None)
                return None
            seen = self._seen.get(account)
            if seen is None or (seen.id, seen.version) != (row.id, row.version):
                seen = self._seen[account] = self._read(scope, row.id, row.version)
            return seen.state.copy()

    def _read(self, scope: Session, account_id: int, version: int) -> _Seen:
        from workbench.store import PaperAccountRow, PaperFillRow, PaperOrderRow, PaperPositionRow

        row = cast(PaperAccountRow, scope.get(PaperAccountRow, account_id))  # the caller just found it
        state = PaperAccount(row.currency, float(row.cash), synced=row.synced, next_id=row.next_id)
        for p in scope.scalars(select(PaperPositionRow).where(PaperPositionRow.account_id == account_id)):
            state.positions[p.symbol] = PaperPosition(
                float(p.units), float(p.entry), float(p.margin), float(p.leverage)
            )
        orders = select(PaperOrderRow).where(PaperOrderRow.account_id == account_id)
        fills = select(PaperFillRow).where(PaperFillRow.account_id == account_id).order_by(PaperFillRow.seq)
        if self._since is not None:
            orders = orders.where(or_(PaperOrderRow.status == "open", PaperOrderRow.ts >= self._since))
            fills = fills.where(PaperFillRow.ts >= self._since)
        for o in scope.scalars(orders):
            state.orders[o.id] = Order(
                o.id,
                o.client_order_id,
                o.symbol,
                o.side,
                o.type,
                o.amount,
                o.price,
                o.filled,
                o.average,
                o.status,
                o.ts,
                o.reduce_only,
            )
        ordered = sorted(state.orders.values(), key=lambda o: int(o.id[1:]))  # ids count up: P1, P2, L3...
        state.orders = {o.id: o for o in ordered}
        state.fills = [
            Fill(
                f.id,
                f.order_id,
                f.client_order_id,
                f.symbol,
                f.side,
                f.amount,
                f.price,
                f.fee,
                f.fee_currency,
                f.ts,
                f.taker,
            )
            for f in scope.scalars(fills)
        ]
        total = cast(int, scope.scalar(select(func.count()).where(PaperFillRow.account_id == account_id)))
        return _Seen(account_id, version, state, total - len(state.fills))

    def save(self, account: str, state: PaperAccount) -> None:
        from workbench.store import PaperAccountRow

        with self._session() as scope:
            row = scope.execute(
                select(PaperAccountRow.id, PaperAccountRow.version)
                .where(PaperAccountRow.account == account)
                .with_for_update()
            ).first()
            seen = self._seen.get(account)
            if row is None:
                created = PaperAccountRow(
                    account=account,
                    currency=state.currency,
                    cash=_dec(state.cash),
                    synced=state.synced,
                    next_id=state.next_id,
                    version=1,
                )
                scope.add(created)
                scope.flush()
                seen = _Seen(created.id, 0, PaperAccount(state.currency, state.cash))
            elif seen is None or (seen.id, seen.version) != (row.id, row.version):
                raise ExchangeError(
                    f"paper account {account!r} was changed by another process since it was read; load it again"
                )
            else:
                scope.execute(
                    update(PaperAccountRow)
                    .where(PaperAccountRow.id == seen.id)
                    .values(cash=_dec(state.cash), synced=state.synced, next_id=state.next_id, version=seen.version + 1)
                )
            self._write_changes(scope, seen, state)
        self._seen[account] = _Seen(seen.id, seen.version + 1, state.copy(), seen.skipped_fills)

    @staticmethod
    def _write_changes(scope: Session, seen: _Seen, state: PaperAccount) -> None:
        from workbench.store import PaperFillRow, PaperOrderRow, PaperPositionRow

        base, account_id = seen.state, seen.id
        positions = [
            {
                "account_id": account_id,
                "symbol": symbol,
                "units": _dec(p.units),
                "entry": _dec(p.entry),
                "margin": _dec(p.margin),
                "leverage": _dec(p.leverage),
            }
            for symbol, p in state.positions.items()
            if base.positions.get(symbol) != p
        ]
        if positions:
            statement = insert(PaperPositionRow).values(positions)
            scope.execute(
                statement.on_conflict_do_update(
                    index_elements=["account_id", "symbol"],
                    set_={c: statement.excluded[c] for c in ("units", "entry", "margin", "leverage")},
                )
            )
        orders = [
            {
                "account_id": account_id,
                "id": o.id,
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side,
                "type": o.type,
                "amount": o.amount,
                "price": o.price,
                "filled": o.filled,
                "average": o.average,
                "status": o.status,
                "ts": o.timestamp,
                "reduce_only": o.reduce_only,
            }
            for o in state.orders.values()
            if base.orders.get(o.id) != o
        ]
        if orders:
            statement = insert(PaperOrderRow).values(orders)
            scope.execute(
                statement.on_conflict_do_update(
                    index_elements=["account_id", "id"],
                    set_={c: statement.excluded[c] for c in ("filled", "average", "status")},
                )
            )
        if len(state.fills) < len(base.fills):
            raise ExchangeError("paper fills are append-only; a saved fill was removed")
        fills = [
            {
                "account_id": account_id,
                "id": f.id,
                "seq": seq,
                "order_id": f.order_id,
                "client_order_id": f.client_order_id,
                "symbol": f.symbol,
                "side": f.side,
                "amount": f.amount,
                "price": f.price,
                "fee": f.fee,
                "fee_currency": f.fee_currency,
                "ts": f.timestamp,
                "taker": f.taker,
            }
            for seq, f in enumerate(state.fills[len(base.fills) :], start=seen.skipped_fills + len(base.fills))
        ]
        if fills:
            scope.execute(insert(PaperFillRow).values(fills))
