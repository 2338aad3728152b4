"""Which session factory a command-line process uses: the tenant's, or the operator's.

A process with ``WORKBENCH_TENANT_DATABASE_URL`` (a tenant's terminal, a live run) acts as that
tenant through :func:`~workbench.store.session`; any other acts as the operator through
:func:`~workbench.store.owner_session`, and only on a database at the newest schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from workbench.errors import DatabaseError
from workbench.store._engine import TENANT_URL_ENV, owner_session
from workbench.store._migrate import current_revision, head_revision
from workbench.store._tenants import session


def opener() -> Callable[[], AbstractContextManager[Session]]:
    """``store.session`` in a tenant's process, else ``store.owner_session`` once the database
    is at head (:func:`require_head`): what to pass as ``opener=`` to act as the caller."""
    if os.environ.get(TENANT_URL_ENV):
        return session
    require_head()
    return owner_session


def require_head() -> None:
    """The trusted side works on a migrated database only: :class:`DatabaseError` saying how to
    get there when the schema is behind (or ahead of) this workbench."""
    current, head = current_revision(), head_revision()
    if current != head:
        raise DatabaseError(
            f"the database is at schema revision {current or 'none'}, this workbench needs "
            f"{head}; run `workbench db upgrade`"
        )
