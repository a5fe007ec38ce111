"""community: publishing, likes, reports, feedback and training consent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("training_consent", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("assets") as assets:
        assets.add_column(sa.Column("job_id", sa.String(40), nullable=True))
        assets.add_column(sa.Column("published", sa.DateTime(), nullable=True))
        assets.add_column(sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false()))
        assets.add_column(sa.Column("likes", sa.Integer(), nullable=False, server_default="0"))
        assets.create_index("ix_assets_job_id", ["job_id"])
    for table, extra in (("likes", []), ("reports", [sa.Column("reason", sa.String(500), nullable=False)]),
                         ("feedback", [sa.Column("kind", sa.String(16), nullable=False)])):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
            sa.Column("asset_id", sa.String(40), sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
            *extra,
            sa.Column("created", sa.DateTime(), nullable=False),
            *([sa.Column("resolved", sa.DateTime(), nullable=True)] if table == "reports" else []),
            *([sa.UniqueConstraint("user_id", "asset_id")] if table != "feedback" else []),
        )
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])
        op.create_index(f"ix_{table}_asset_id", table, ["asset_id"])


def downgrade() -> None:
    for table in ("feedback", "reports", "likes"):
        op.drop_table(table)
    with op.batch_alter_table("assets") as assets:
        assets.drop_index("ix_assets_job_id")
        for column in ("likes", "hidden", "published", "job_id"):
            assets.drop_column(column)
    with op.batch_alter_table("users") as users:
        users.drop_column("training_consent")
