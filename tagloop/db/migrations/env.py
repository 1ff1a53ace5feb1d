"""Alembic environment: the URL comes from the caller (tagloop.db.migrate), never from env vars."""

from __future__ import annotations

from alembic import context

from tagloop.db.engine import get_engine
from tagloop.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("tagloop migrations need sqlalchemy.url; run `tagloop db upgrade`")


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    with get_engine(url).connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it.
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
