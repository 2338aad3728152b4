"""The strategy marketplace: listings, what a clone copies, entitlements; clones' origin.

The three tables are shared between tenants, so their policies are not the tenant_rows of a
tenant-owned table. With ``me`` = current_tenant_name() (NULL for any non-tenant role):

- market_listings: every tenant reads rows with status 'listed'; the author reads, inserts
  and updates only rows whose author is ``me``. No tenant deletes (withdraw instead).
- market_listing_params (the parameters and risk limits a clone copies): the author reads and
  writes those of its own listings; another tenant reads them only while the listing is
  listed and is free or ``me`` holds an entitlement to it. A paid listing's parameters are
  thus unreadable, even by raw SQL, until an entitlement exists.
- market_entitlements: the author of a listing grants (inserts) entitlements to it, always
  with granted_by = ``me``; a tenant reads the entitlements of its own listings and those
  granted to itself, no others. The operator (owner role) grants with granted_by NULL.
  Entitlements are never changed or deleted by tenants.

Policy subqueries run with the caller's rights, so they see only what the caller may see.
strategies.listing_id records the listing a clone came from (a plain reference to the
shared table; the clone itself is an ordinary row of the cloner).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 16:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from workbench.store._rls import forget_tenant_table, tenant_table

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ME = "(SELECT current_tenant_name())"
OWN_LISTING = f"EXISTS (SELECT 1 FROM market_listings l WHERE l.id = {{table}}.listing_id AND l.author = {ME})"


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION current_tenant_name() RETURNS text LANGUAGE sql STABLE AS $$
            SELECT name FROM public.tenants WHERE role_name = current_user AND removed_at IS NULL
        $$""")
    op.create_table(
        "market_listings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("author", sa.Text(), server_default=sa.text("current_tenant_name()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("dataset_info", postgresql.JSONB(), nullable=False),
        sa.Column("settings", postgresql.JSONB(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("equity_curve", postgresql.JSONB(), nullable=False),
        sa.Column("price", sa.Numeric(), server_default=sa.text("0"), nullable=False),
        sa.Column("currency", sa.Text(), server_default=sa.text("'USD'"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'listed'"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('listed', 'withdrawn')", name=op.f("ck_market_listings_status")),
        sa.CheckConstraint("name <> ''", name=op.f("ck_market_listings_name")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_market_listings_price")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_market_listings_version")),
        sa.ForeignKeyConstraint(["author"], ["tenants.name"], name=op.f("fk_market_listings_author")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_listings")),
    )
    tenant_table("market_listings", "SELECT, INSERT, UPDATE", rows=f"author = {ME}")
    op.execute("CREATE POLICY catalogue ON market_listings FOR SELECT USING (status = 'listed')")

    op.create_table(
        "market_listing_params",
        sa.Column("listing_id", sa.BigInteger(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("risk_limits", postgresql.JSONB(), nullable=False),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["market_listings.id"], name=op.f("fk_market_listing_params_listing_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("listing_id", name=op.f("pk_market_listing_params")),
    )
    tenant_table(
        "market_listing_params", "SELECT, INSERT, UPDATE", rows=OWN_LISTING.format(table="market_listing_params")
    )
    op.create_table(
        "market_entitlements",
        sa.Column("listing_id", sa.BigInteger(), nullable=False),
        sa.Column("grantee", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), server_default=sa.text("current_tenant_name()"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["grantee"], ["tenants.name"], name=op.f("fk_market_entitlements_grantee")),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["market_listings.id"], name=op.f("fk_market_entitlements_listing_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("listing_id", "grantee", name=op.f("pk_market_entitlements")),
    )
    tenant_table("market_entitlements", "SELECT, INSERT", rows=OWN_LISTING.format(table="market_entitlements"))
    op.execute(f"CREATE POLICY own_entitlements ON market_entitlements FOR SELECT USING (grantee = {ME})")
    op.execute(
        f"CREATE POLICY granted_by_author ON market_entitlements AS RESTRICTIVE FOR INSERT "
        f"WITH CHECK (granted_by = {ME})"
    )

    # after market_entitlements exists: the policy reads it
    op.execute(f"""
        CREATE POLICY cloneable ON market_listing_params FOR SELECT USING (EXISTS (
            SELECT 1 FROM market_listings l
            WHERE l.id = market_listing_params.listing_id AND l.status = 'listed'
              AND (l.price = 0 OR EXISTS (SELECT 1 FROM market_entitlements e
                                          WHERE e.listing_id = l.id AND e.grantee = {ME}))))""")

    op.add_column("strategies", sa.Column("listing_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_strategies_listing_id"), "strategies", "market_listings", ["listing_id"], ["id"], ondelete="SET NULL"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_strategies_listing_id"), "strategies", type_="foreignkey")
    op.drop_column("strategies", "listing_id")
    op.execute("DROP POLICY cloneable ON market_listing_params")  # it reads market_entitlements
    for table in ("market_entitlements", "market_listing_params", "market_listings"):
        forget_tenant_table(table)
        op.drop_table(table)
    op.execute("DROP FUNCTION current_tenant_name()")
