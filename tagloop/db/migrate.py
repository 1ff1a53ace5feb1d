"""Run Alembic migrations programmatically (`tagloop db upgrade`, `tagloop up`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from tagloop.config import private_dir

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URLs may contain it (escaped passwords).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, *, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        # Missing folders are made 0700: a database's folder is nobody else's business.
        private_dir(Path(url.removeprefix("sqlite:///")).parent)
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str, *, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
