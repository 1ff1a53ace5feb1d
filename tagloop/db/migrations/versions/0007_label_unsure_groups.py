"""Groups an annotator marked unsure on a label: label.unsure_groups

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 12:00:00.000000

A label is complete unless said otherwise: a group with no chosen tag is "none of these",
unless the annotator marked the group unsure. The column holds those group names (a JSON list).
Existing labels get NULL, read as no unsure group: the annotator said nothing was unsure.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unsure_groups", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_column("unsure_groups")
