"""Tag names unique ignoring case and spacing: tag.name_key

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00.000000

Existing tags get their key here. Tags that already differ only in case or spacing ("Dog"
next to "dog") are kept as they are, since labels and model vocabularies name them: the
oldest keeps the plain key, each later one gets ``<key>#<id>`` and a warning names them. New
tags of that name are refused from now on; merge or rename the duplicates by hand when
convenient (labels store tag names, so renaming one means rewriting its labels).
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _key(name: str) -> str:
    # Frozen copy of tagloop.db.tags.tag_key as of this revision (migrations must not change
    # when the app code does).
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def upgrade() -> None:
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=512), nullable=True))
    tag = sa.table("tag", sa.column("id", sa.Integer), sa.column("name", sa.String))
    conn = op.get_bind()
    taken: dict[str, str] = {}
    duplicates: list[str] = []
    for tag_id, name in conn.execute(sa.select(tag.c.id, tag.c.name).order_by(tag.c.id)):
        key = _key(name)
        if len(key) > 512:  # NFKC lengthened a legacy name past the column: keep it unique
            key = f"{key[:480]}#{tag_id}"
        elif key in taken:
            duplicates.append(f"{name!r} (id {tag_id}) duplicates {taken[key]!r}")
            key = f"{key}#{tag_id}"
        else:
            taken[key] = name
        conn.execute(
            sa.text("UPDATE tag SET name_key = :key WHERE id = :id"), {"key": key, "id": tag_id}
        )
    if duplicates:
        log.warning(
            "tags that differ only in case or spacing are kept, but no new tag may take "
            "these names: %s",
            "; ".join(duplicates),
        )
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=512), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_tag_name_key"), ["name_key"])


def downgrade() -> None:
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_tag_name_key"), type_="unique")
        batch_op.drop_column("name_key")
