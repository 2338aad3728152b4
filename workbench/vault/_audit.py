"""The audit log of key uses: what the trusted side writes, and what a tenant reads back.

Every time ``LocalVault`` decrypts an account's key (a check, a live run, a notebook's
``keys_for``, a re-encryption) or sends a newly added key to the exchange, it adds one row to
``key_use_audit`` in the same transaction that read the ciphertext, so no use goes unrecorded.
The row names the account (and the key's masked hint), the purpose, the session and run, the
process, and the time; never the key. Tenants read their rows through their own database role
(row-level security shows each tenant only its own, and the table is append-only for everyone).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench import store
from workbench.store.models import KeyUseRecord
from workbench.vault._backend import KeyUse

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COLUMNS = ["used_at", "account_id", "exchange", "key_hint", "purpose", "session_id", "run_id", "actor"]


def this_process() -> str:
    """Who is using the key: the program, its pid and unix user, and the host."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return f"{program} (pid {os.getpid()}, uid {os.getuid()}) on {socket.gethostname()}"


def record(
    session: Session, tenant_id: int, account_id: int, exchange: str, key_hint: str, use: KeyUse, actor: str
) -> None:
    """Add one audit row in ``session``'s transaction (the trusted side's, as the database owner)."""
    session.add(
        KeyUseRecord(
            tenant_id=tenant_id,
            account_id=account_id,
            exchange=exchange,
            key_hint=key_hint,
            purpose=use.purpose,
            actor=actor,
            session_id=use.session_id,
            run_id=use.run_id,
        )
    )


def audit(account_id: int | None = None, limit: int = 200) -> pd.DataFrame:
    """The newest ``limit`` uses of this tenant's keys (of one account if given), newest first,
    read with the tenant's own database role."""
    import pandas as pd

    query = select(*(getattr(KeyUseRecord, c) for c in COLUMNS)).order_by(KeyUseRecord.id.desc()).limit(int(limit))
    if account_id is not None:
        query = query.where(KeyUseRecord.account_id == int(account_id))
    with store.session() as session:
        rows: Sequence[Any] = session.execute(query).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)
