"""Risk limits a live tick checks on the real account before it sends anything.

The simulation already obeys the strategy's limits (the kernel caps entries and halts on
the daily loss, as in the backtest); these checks guard the account itself, whatever the
cause (fills away from the simulated prices, orders placed by hand, a bug): a breach stops
the session instead of trading on.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from workbench.errors import RiskLimitBreached
from workbench.live._plan import Leg

TOLERANCE = Decimal("1e-9")  # relative: float sizing that fills "up to the limit" may pass it by an ulp
# entries are sized on the equity at the open, checked on the equity now: allow that much drift
_LEVERAGE_SLACK = Decimal("1.1")


def check(
    *,
    position: Decimal,
    equity: Decimal,
    day_start: Decimal | None,
    legs: Sequence[Leg],
    leverage: Decimal,
    max_leverage: Decimal,
    max_position_size: float | None,
    max_daily_loss: float | None,
    currency: str,
) -> None:
    """RiskLimitBreached naming the first limit the account or the legs break, and by how much.

    Position size and leverage are limits on what the session does: each entry leg is checked
    with everything held after it at its own price (as the kernel sizes entries), so a
    position that grew in value by itself is not a breach, an entry that would exceed is."""
    if leverage > max_leverage:
        raise RiskLimitBreached(
            f"risk limit max_leverage {max_leverage:g}: the session trades at leverage "
            f"{leverage:g}, {leverage - max_leverage:g} above it"
        )
    if max_daily_loss is not None and day_start is not None:
        loss = day_start - equity
        limit: Decimal | None  # here a Decimal; below None when there is no position limit
        limit = _amount(max_daily_loss)
        if loss >= limit:
            raise RiskLimitBreached(
                f"risk limit max_daily_loss {limit:g} {currency}: today's loss is "
                f"{loss:.2f} {currency} (equity {equity:.2f} from {day_start:.2f}), "
                f"{loss - limit:.2f} {currency} over the limit"
            )
    limit = None if max_position_size is None else _amount(max_position_size)
    held = position  # worst case: market legs fill now, every resting entry fills, no resting exit does
    for leg in legs:  # each entry as the kernel sizes it: everything held after it, at its price
        signed = leg.amount if leg.side == "buy" else -leg.amount
        grows = not held or (signed > 0) == (held > 0)
        if leg.type == "market" or (grows and not leg.reduce_only):
            held += signed
        if not grows or leg.reduce_only:
            continue
        value = abs(held) * leg.price
        if limit is not None and value > limit * (1 + TOLERANCE):
            raise RiskLimitBreached(
                f"risk limit max_position_size {limit:g} {currency}: the {leg.name} "
                f"{leg.side} of {leg.amount:g} at {leg.price:g} would hold {value:.2f} "
                f"{currency}, {value - limit:.2f} over the limit"
            )
        if equity > 0 and value / equity > max_leverage * _LEVERAGE_SLACK:
            raise RiskLimitBreached(
                f"risk limit max_leverage {max_leverage:g}: the {leg.name} {leg.side} of "
                f"{leg.amount:g} at {leg.price:g} would hold {value / equity:.2f}x the equity "
                f"of {equity:.2f} {currency}, {value / equity - max_leverage:.2f}x over"
            )


def _amount(value: float) -> Decimal:
    """A limit as people write it: 150, not 150.0."""
    number = Decimal(repr(float(value))).normalize()
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number
