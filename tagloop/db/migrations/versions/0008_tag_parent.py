"""A taxonomy's hierarchy: tag.parent_id

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 12:00:00.000000

A tag may name a broader tag as its parent ("labrador" under "dog"), set by the bulk taxonomy
import (``POST /api/v1/tags/import``) and written back by its export. Existing tags get NULL:
no parent. Deleting a parent (nothing does yet) leaves its children without one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tag_parent_id_tag"), "tag", ["parent_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tag_parent_id_tag"), type_="foreignkey")
        batch_op.drop_column("parent_id")
