"""Co-training pseudo-labels: pseudo_label, kept apart from human labels

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pseudo_label",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("negative_tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clip_id"], ["clip.id"], name=op.f("fk_pseudo_label_clip_id_clip"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_pseudo_label_model_version_id_model_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pseudo_label")),
        sa.UniqueConstraint(
            "model_version_id", "clip_id", "source", name="uq_pseudo_label_version_clip_source"
        ),
    )
    with op.batch_alter_table("pseudo_label", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pseudo_label_clip_id"), ["clip_id"], unique=False)
        batch_op.create_index(
            "ix_pseudo_label_version_id", ["model_version_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("pseudo_label", schema=None) as batch_op:
        batch_op.drop_index("ix_pseudo_label_version_id")
        batch_op.drop_index(batch_op.f("ix_pseudo_label_clip_id"))
    op.drop_table("pseudo_label")
