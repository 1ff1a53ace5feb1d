"""Build an in-process API on a real database for route tests (workers are tested elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from services.api.app import create_app
from tagloop.auth import create_token
from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database


@dataclass
class ApiHarness:
    client: TestClient
    settings: Settings
    admin: dict[str, str]
    annotator: dict[str, str]


def make_api(tmp_path: Path, db_url: str, **overrides: object) -> ApiHarness:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, **overrides)  # type: ignore[arg-type]
    upgrade_database(settings.database_url)
    with session_scope(settings.database_url) as s:
        admin = create_token(s, name="root", role="admin")
        annotator = create_token(s, name="ann", role="annotator")
    client = TestClient(create_app(settings))
    return ApiHarness(
        client=client,
        settings=settings,
        admin={"Authorization": f"Bearer {admin}"},
        annotator={"Authorization": f"Bearer {annotator}"},
    )


def upload(h: ApiHarness, path: Path, *, name: str | None = None) -> tuple[int, dict]:
    with path.open("rb") as f:
        r = h.client.post(
            "/api/v1/videos", headers=h.admin, files={"file": (name or path.name, f, "video/mp4")}
        )
    return r.status_code, r.json()
