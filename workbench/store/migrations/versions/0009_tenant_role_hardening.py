"""What a tenant role may not do: write the vault's tables, large objects, other databases.

The vault writes ``exchange_accounts`` and ``tenant_data_keys`` as the owner (the workbench
service, or the notebook's own process in single-user mode), so tenants keep only reading
their own accounts and get nothing of ``tenant_data_keys``. As a superuser the migration also
takes PUBLIC's large-object and backend-status functions, ``pg_stat_activity`` and CONNECT on
the maintenance databases (``_rls.close_public_access``); under an owner that is no superuser
the embedded server's bootstrap does it, and ``workbench db check`` reports what is left.
Downgrade restores the table grants and leaves PUBLIC's privileges revoked.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:00:00
"""

from typing import cast

from alembic import op
from psycopg.rows import TupleRow

from workbench.store._rls import close_public_access, driver, set_tenant_privileges

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    set_tenant_privileges(bind, "tenant_data_keys", None)
    set_tenant_privileges(bind, "exchange_accounts", "SELECT")
    conn = driver(bind)
    close_public_access(conn, keep=cast(TupleRow, conn.execute("SELECT current_user").fetchone())[0])


def downgrade() -> None:
    bind = op.get_bind()
    set_tenant_privileges(bind, "exchange_accounts", "SELECT, INSERT, UPDATE, DELETE")
    set_tenant_privileges(bind, "tenant_data_keys", "SELECT, INSERT")
