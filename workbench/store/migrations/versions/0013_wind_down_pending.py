"""A wind-down that could not secure its session's position, kept until a later try does.

``trading_sessions.wind_down_pending``: the policy (``flatten``, ``protect`` or ``leave``) of
a stop or error whose wind-down could not reach the exchange or was refused by it; the
scheduler keeps running the session's live notebook while it is set, and each run tries the
wind-down again, until the position is secured (then it is cleared, and the user told).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("trading_sessions", sa.Column("wind_down_pending", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_trading_sessions_wind_down_pending"),
        "trading_sessions",
        "wind_down_pending IN ('flatten', 'protect', 'leave')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_trading_sessions_wind_down_pending", "trading_sessions")
    op.drop_column("trading_sessions", "wind_down_pending")
