"""Orders whose outcome is unknown, and what reconciliation with the exchange records.

``orders.sent_at``: when the order was last sent (the write-ahead row is written just before
each send), so a later attempt knows how long the exchange has had to show it before it is
judged never accepted. ``orders.resolution``: how an order's fate was settled when the tick
that sent it did not hear back (found by client id, found in the order history, absent after
the wait and sent again), or why reconciliation wrote it (adopted from, or cancelled on, the
exchange: an order of the session's the database did not know).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("resolution", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "resolution")
    op.drop_column("orders", "sent_at")
