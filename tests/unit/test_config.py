from pathlib import Path

import pytest

from tagloop.config import Settings


def test_defaults_derive_from_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d")
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'tagloop.db'}"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path / 'd' / 'broker.sqlite'}"
    assert s.blob_url == str(tmp_path / "d" / "blobs")
    assert s.admin_token_path == tmp_path / "d" / "admin.token"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGLOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAGLOOP_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TAGLOOP_CLIP_SECONDS", "4.5")
    monkeypatch.setenv("TAGLOOP_IMPORT_ROOTS", f'["{tmp_path}"]')
    s = Settings()
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.clip_seconds == 4.5
    assert s.import_roots == [tmp_path.resolve()]
    assert s.broker_url.startswith("sqla+sqlite:///" + str(tmp_path))
