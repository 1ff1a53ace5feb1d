"""Loop liveness: clip split (pool/holdout) and needs_review; queue lanes and skip reasons;
an index for the top of a version's ranking

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clip", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("split", sa.String(length=16), nullable=False, server_default="pool")
        )
        batch_op.add_column(
            sa.Column("needs_review", sa.Boolean(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("queue_item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lane", sa.String(length=16), nullable=False, server_default="al")
        )
        batch_op.add_column(sa.Column("skip_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_queue_item_clip_status", ["clip_id", "status"], unique=False)
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prediction_version_uncertainty",
            ["model_version_id", "uncertainty", "clip_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_version_uncertainty")
    with op.batch_alter_table("queue_item", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_item_clip_status")
        batch_op.drop_column("skipped_at")
        batch_op.drop_column("skip_reason")
        batch_op.drop_column("lane")
    with op.batch_alter_table("clip", schema=None) as batch_op:
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("needs_review")
        batch_op.drop_column("split")
