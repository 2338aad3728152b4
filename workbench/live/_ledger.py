"""A session's records: its orders (written before they are sent), fills, equity snapshots.

Each function is its own committed transaction (``db()`` opens one, as the tenant), so what
is recorded survives a crash right after it: the order row of a leg exists before the order
is sent (write-ahead), and a fill is recorded once whatever happens (unique per order and
exchange trade id).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from workbench import store
from workbench.exchange import Fill, FundingPayment, Order
from workbench.live._plan import Leg

_OPEN = ("new", "open")
Db = Callable[[], AbstractContextManager[Session]]


def client_id(session_id: int, candle: datetime, leg: str) -> str:
    """The deterministic client order id of a leg: session, candle (minutes, hex) and leg;
    at most 28 characters of letters, digits and '-' (Gate's limit)."""
    return f"{client_prefix(session_id)}{int(candle.timestamp()) // 60:x}-{leg}"


def client_prefix(session_id: int) -> str:
    """What every client order id of the session starts with."""
    return f"wb{session_id}-"


def parse_client_id(session_id: int, cid: str) -> tuple[datetime, str] | None:
    """(candle, leg) of a client order id of the session, None when it is not one."""
    prefix = client_prefix(session_id)
    if not cid.startswith(prefix):
        return None
    minutes, _, leg = cid[len(prefix) :].partition("-")
    try:
        return datetime.fromtimestamp(int(minutes, 16) * 60, tz=UTC), leg
    except ValueError:
        return None


def orders(db: Db, session_id: int, *, candle: datetime | None = None, pending: bool = False) -> list[store.Order]:
    """The session's orders: of one candle, or all still new or open (``pending``)."""
    query = select(store.Order).where(store.Order.session_id == session_id).order_by(store.Order.id)
    if candle is not None:
        query = query.where(store.Order.candle_at == candle)
    if pending:
        query = query.where(store.Order.status.in_(_OPEN))
    with db() as scope:
        return list(scope.scalars(query))


def record_intent(
    db: Db, session_id: int, candle: datetime, leg: Leg, cid: str, amount: Decimal, price: Decimal | None
) -> store.Order:
    """Write-ahead: the leg's order row, status ``new``, before anything is sent."""
    with db() as scope:
        row = store.Order(
            session_id=session_id,
            client_order_id=cid,
            side=leg.side,
            type=leg.type,
            price=price if leg.type != "market" else None,
            amount=amount,
            candle_at=candle,
            leg=leg.name,
            reduce_only=leg.reduce_only,
            sent_at=datetime.now(UTC),
        )
        scope.add(row)
        scope.flush()
        return row


def mark_sent(db: Db, session_id: int, cid: str, resolution: str | None = None) -> datetime:
    """An order is sent (again) now: its ``sent_at``, and why it is sent again."""
    now = datetime.now(UTC)
    with db() as scope:
        scope.execute(
            update(store.Order)
            .where(store.Order.session_id == session_id, store.Order.client_order_id == cid)
            .values(sent_at=now, resolution=resolution)
        )
    return now


def record_order(
    db: Db, session_id: int, cid: str, order: Order | None, *, status: str | None = None, resolution: str | None = None
) -> None:
    """What the exchange says about an order of ours (None: it never got it), and how an
    unknown outcome was settled (``resolution``)."""
    values = (
        {"status": status}
        if order is None
        else {
            "exchange_order_id": order.id,
            "status": status or order.status,
            "filled": order.filled,
            "average": order.average,
        }
    )
    if resolution is not None:
        values["resolution"] = resolution
    with db() as scope:
        scope.execute(
            update(store.Order)
            .where(store.Order.session_id == session_id, store.Order.client_order_id == cid)
            .values(**values)
        )


def record_fills(db: Db, session_id: int, fills: list[Fill], *, adopt: bool) -> int:
    """Record the fills of the session's orders (``adopt``: also those of orders the exchange
    placed itself, e.g. a paper liquidation); how many were new."""
    if not fills:
        return 0
    new = 0
    with db() as scope:
        known = dict(
            scope.execute(
                select(store.Order.exchange_order_id, store.Order.id).where(
                    store.Order.session_id == session_id, store.Order.exchange_order_id.in_({f.order_id for f in fills})
                )
            ).all()
        )
        for fill in fills:
            order_id = known.get(fill.order_id)
            if order_id is None and adopt and fill.client_order_id is None:
                order_id = known[fill.order_id] = _adopt(scope, session_id, fill)
            if order_id is None:
                continue
            inserted = scope.execute(
                insert(store.Fill)
                .values(
                    order_id=order_id,
                    exchange_trade_id=fill.id,
                    price=fill.price,
                    amount=fill.amount,
                    fee=fill.fee,
                    fee_currency=fill.fee_currency,
                    ts=fill.timestamp,
                )
                .on_conflict_do_nothing()
                .returning(store.Fill.id)
            )
            new += inserted.first() is not None
    return new


def adopt_order(db: Db, session_id: int, order: Order, resolution: str) -> None:
    """Write the row of an order of the session's that the exchange has and the database does
    not (e.g. after a restore from an older backup), so its fills are recorded like any other."""
    # adopted orders carry a client id: the session's own, or the "liq-" one given to a liquidation
    candle, leg = parse_client_id(session_id, cast(str, order.client_order_id)) or (None, "exchange")
    with db() as scope:
        scope.execute(
            insert(store.Order)
            .values(
                session_id=session_id,
                client_order_id=order.client_order_id,
                exchange_order_id=order.id,
                side=order.side,
                type=order.type if order.type in ("market", "limit", "stop") else "market",
                price=order.price,
                amount=order.amount,
                filled=order.filled,
                average=order.average,
                status=order.status,
                candle_at=candle,
                leg=leg,
                reduce_only=order.reduce_only,
                sent_at=order.timestamp,
                resolution=resolution,
            )
            .on_conflict_do_nothing()
        )


def known_orders(db: Db, session_id: int) -> dict[str, str | None]:
    """Every client order id of the session with its exchange order id (None: not heard back)."""
    with db() as scope:
        return dict(
            scope.execute(
                select(store.Order.client_order_id, store.Order.exchange_order_id).where(
                    store.Order.session_id == session_id
                )
            ).all()
        )


def position(db: Db, session_id: int, *, base: str | None = None) -> Decimal:
    """The position the recorded fills make (signed base units); ``base``: spot, where a buy's
    commission taken in the base asset is not held."""
    with db() as scope:
        rows = scope.execute(
            select(store.Order.side, store.Fill.amount, store.Fill.fee, store.Fill.fee_currency)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == session_id)
        ).all()
    return sum(
        (
            (r.amount if r.side == "buy" else -r.amount) - (r.fee if base and r.fee_currency == base else 0)
            for r in rows
        ),
        Decimal(0),
    )


def _adopt(scope, session_id: int, fill: Fill) -> int:
    row = store.Order(
        session_id=session_id,
        client_order_id=f"x-{fill.order_id}"[:28],
        exchange_order_id=fill.order_id,
        side=fill.side,
        type="market",
        amount=fill.amount,
        filled=fill.amount,
        average=fill.price,
        status="closed",
        leg="exchange",
    )
    scope.add(row)
    scope.flush()
    return row.id


def recorded_fills(db: Db, session_id: int, order_ids: list[str]) -> dict[str, dict[str, Decimal]]:
    """The fills recorded for the session's orders with these exchange ids: order id ->
    {trade id: amount}."""
    found: dict[str, dict[str, Decimal]] = {}
    with db() as scope:
        for order_id, trade_id, amount in scope.execute(
            select(store.Order.exchange_order_id, store.Fill.exchange_trade_id, store.Fill.amount)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == session_id, store.Order.exchange_order_id.in_(order_ids))
        ):
            found.setdefault(cast(str, order_id), {})[trade_id] = amount  # in order_ids: not NULL
    return found


def record_funding(db: Db, session_id: int, payments: list[FundingPayment]) -> int:
    """Record funding payments (each once, by the exchange's id); how many were new."""
    if not payments:
        return 0
    with db() as scope:
        return len(
            scope.scalars(
                insert(store.FundingPayment)
                .values(
                    [
                        {
                            "session_id": session_id,
                            "exchange_payment_id": p.id,
                            "amount": p.amount,
                            "currency": p.currency,
                            "ts": p.timestamp,
                        }
                        for p in payments
                    ]
                )
                .on_conflict_do_nothing()
                .returning(store.FundingPayment.id)
            ).all()
        )


def last_funding_at(db: Db, session_id: int) -> datetime | None:
    with db() as scope:
        return scope.scalar(
            select(func.max(store.FundingPayment.ts)).where(store.FundingPayment.session_id == session_id)
        )


def last_fill_at(db: Db, session_id: int) -> datetime | None:
    with db() as scope:
        return scope.scalar(
            select(func.max(store.Fill.ts))
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == session_id)
        )


def day_start_equity(db: Db, session_id: int, midnight: datetime) -> Decimal | None:
    """The first equity snapshot of the UTC day starting at ``midnight``."""
    with db() as scope:
        return scope.scalar(
            select(store.EquitySnapshot.equity)
            .where(store.EquitySnapshot.session_id == session_id, store.EquitySnapshot.ts >= midnight)
            .order_by(store.EquitySnapshot.ts)
            .limit(1)
        )


def snapshot(
    db: Db, session_id: int, at: datetime, balance: Decimal, equity: Decimal, position: Decimal, pnl: Decimal
) -> None:
    """The session's balance, equity, position and PnL at candle ``at`` (a retried tick overwrites it)."""
    values = {"balance": balance, "equity": equity, "position": position, "pnl": pnl}
    with db() as scope:
        statement = insert(store.EquitySnapshot).values(session_id=session_id, ts=at, **values)
        scope.execute(statement.on_conflict_do_update(index_elements=["session_id", "ts"], set_=values))
