"""queue_item.lease_id: an unguessable lease handle with a unique index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_queue_item_lease_id"), ["lease_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("queue_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queue_item_lease_id"))
        batch_op.drop_column("lease_id")
