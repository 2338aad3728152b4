"""Where a paper exchange keeps its accounts: a small storage seam.

``PaperStore`` is the whole contract: ``load`` an account's state (None if new) and ``save``
it, atomically. ``MemoryPaperStore`` serves tests and notebooks; a PostgreSQL store
implements the same two methods over the paper tables (``workbench.exchange._paper_pg``: one
``paper_accounts`` row plus its ``paper_positions``, ``paper_orders`` and ``paper_fills``
rows, written in one transaction). Floats are kept as floats so the paper exchange can
replay the backtest engine's float arithmetic exactly; a database stores them as
``Numeric`` via ``Decimal(repr(x))``, which reads back as the identical float.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime

from workbench.exchange._types import Fill, Order


@dataclass(frozen=True)
class PaperPosition:
    """The backtest engine's position slots for one symbol (float64, as in ``workbench.engine.core``)."""

    units: float = 0.0  # signed base units
    entry: float = 0.0
    margin: float = 0.0
    leverage: float = 1.0


@dataclass
class PaperAccount:
    currency: str  # the quote currency the cash is in
    cash: float  # free cash, as the engine's CASH slot (margin not included)
    positions: dict[str, PaperPosition] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # by order id, every state
    fills: list[Fill] = field(default_factory=list)
    synced: datetime | None = None  # resting orders have been matched against bars opening before this
    next_id: int = 1

    def copy(self) -> PaperAccount:
        """A copy sharing only immutable records (orders, fills and positions are frozen)."""
        return replace(self, positions=dict(self.positions), orders=dict(self.orders), fills=list(self.fills))


class PaperStore(ABC):
    @abstractmethod
    def load(self, account: str) -> PaperAccount | None:
        """The account's state, or None if it was never saved."""

    @abstractmethod
    def save(self, account: str, state: PaperAccount) -> None:
        """Replace the account's state, all or nothing."""


class MemoryPaperStore(PaperStore):
    """Accounts in this process's memory; each load hands out an independent copy, so a call
    that fails halfway leaves the saved state untouched, as a database transaction would."""

    def __init__(self) -> None:
        self._accounts: dict[str, PaperAccount] = {}
        self._lock = threading.Lock()

    def load(self, account: str) -> PaperAccount | None:
        with self._lock:
            state = self._accounts.get(account)
            return None if state is None else state.copy()

    def save(self, account: str, state: PaperAccount) -> None:
        with self._lock:
            self._accounts[account] = state.copy()
