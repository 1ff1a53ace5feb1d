"""One label per (clip, annotator): label_history keeps the replaced ones

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:00:00.000000

A second label by the same annotator on the same clip now replaces the first (issue 20: one
annotator could hold several labels on one clip, and 10,000 copies of one Label Studio task
counted as 10,000 new labels towards the next training round). Existing duplicates: the
newest label of each (clip, annotator) stays, the older ones move to ``label_history``.
``seconds_spent`` values that are not finite or outside 0 .. 1e300 (an Infinity the API used
to accept) become NULL, so no export writes a bare ``Infinity``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=128), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clip.id"],
            name=op.f("fk_label_history_clip_id_clip"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_history")),
    )
    with op.batch_alter_table("label_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_history_clip_id"), ["clip_id"], unique=False)
    # NaN is greater than every number on PostgreSQL; SQLite stores NaN as NULL.
    op.execute(
        "UPDATE label SET seconds_spent = NULL WHERE seconds_spent > 1e300 OR seconds_spent < 0"
    )
    newest = (
        "SELECT MAX(l2.id) FROM label AS l2 "
        "WHERE l2.clip_id = label.clip_id AND l2.annotator = label.annotator"
    )
    op.execute(
        "INSERT INTO label_history "
        "(label_id, clip_id, annotator, tags, seconds_spent, created_at, superseded_at) "
        "SELECT id, clip_id, annotator, tags, seconds_spent, created_at, CURRENT_TIMESTAMP "
        f"FROM label WHERE id < ({newest})"
    )
    op.execute(f"DELETE FROM label WHERE id < ({newest})")
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_label_clip_id_annotator", ["clip_id", "annotator"])


def downgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_constraint("uq_label_clip_id_annotator", type_="unique")
    with op.batch_alter_table("label_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_history_clip_id"))
    op.drop_table("label_history")
