"""Alembic environment: migrations run on the owner connection that
``workbench.store.upgrade``/``downgrade`` opens (there is no alembic.ini; see ``_migrate.py``)."""

from alembic import context
from sqlalchemy import text

from workbench.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    # processes starting together migrate one after the other, never interleaved
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('workbench migrations'))"))
    context.run_migrations()
