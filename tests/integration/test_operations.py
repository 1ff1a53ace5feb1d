"""Operations (issue 10): request and error logs, a private data dir, signed media URLs."""

from __future__ import annotations

import logging
import re
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from tagloop.cli import prepare
from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip
from tagloop.media_urls import media_signature, media_url_key
from tagloop.storage import BlobStore
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.stack_helpers import running_stack, stack_settings
from tests.integration.test_labels import add_clips

pytestmark = pytest.mark.integration

REQUEST_LINE = re.compile(
    r"method=(?P<method>\S+) route=(?P<route>\S+) status=(?P<status>\d+) "
    r"ms=(?P<ms>\d+\.\d) caller=(?P<caller>\S+)"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [
        m.groupdict()
        for r in caplog.records
        if r.name == "tagloop.api.request" and (m := REQUEST_LINE.match(r.getMessage()))
    ]


# --- request and error logs -------------------------------------------------------------


def test_request_lines_and_error_tracebacks_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="tagloop")
    h = make_api(tmp_path, f"sqlite:///{tmp_path / 'tagloop.db'}")
    (clip_id,) = add_clips(h.settings.database_url, 1)

    assert h.client.get(f"/api/v1/clips/{clip_id}", headers=h.annotator).status_code == 200
    assert h.client.get("/api/v1/clips/999999").status_code == 401
    # With a token: without one the request gate answers 401 before any route is matched.
    assert h.client.get("/no/such%20path%0A", headers=h.annotator).status_code == 404
    lines = _request_lines(caplog)
    assert lines[0] == {
        "method": "GET",
        "route": "/api/v1/clips/{clip_id}",  # the template, not the id
        "status": "200",
        "ms": lines[0]["ms"],
        "caller": "ann",
    }
    assert lines[1]["status"] == "401" and lines[1]["caller"] == "-"
    assert lines[2]["route"] == "-" and lines[2]["status"] == "404"
    unmatched = next(
        r.getMessage()
        for r in caplog.records
        if "route=-" in r.getMessage() and "status=404" in r.getMessage()
    )
    assert 'path="/no/such path\\n"' in unmatched and "\n" not in unmatched  # quoted, one line

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom in get_clip")

    monkeypatch.setattr("tagloop.db.videos.get_clip", boom)
    caplog.clear()
    client = TestClient(h.client.app, raise_server_exceptions=False)
    r = client.get(f"/api/v1/clips/{clip_id}", headers=h.admin)
    assert r.status_code == 500 and "boom" not in r.text  # no traceback to the client
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "route=/api/v1/clips/{clip_id}" in errors[0].getMessage()
    assert "RuntimeError: boom in get_clip" in caplog.text  # the traceback
    assert "Traceback (most recent call last)" in caplog.text
    (line,) = _request_lines(caplog)
    assert line["status"] == "500" and line["caller"] == "root"
    assert "error=RuntimeError" in caplog.text


def test_the_real_api_writes_request_lines_to_api_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{data / 'tagloop.db'}",
        broker_url=f"sqla+sqlite:///{data / 'broker.sqlite'}",
    )
    log_file = settings.data_dir / "logs" / "api.log"
    with running_stack(settings, ["api"]) as (_, client):
        for _ in range(3):
            client.request("GET", "/api/v1/tags")
        client.request("GET", "/api/v1/stats")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and log_file.read_text().count("route=") < 4:
            time.sleep(0.1)
    text = log_file.read_text()
    tag_lines = [ln for ln in text.splitlines() if "route=/api/v1/tags " in ln]
    assert len(tag_lines) == 3, text[-3000:]
    assert all(REQUEST_LINE.search(ln) for ln in tag_lines)
    assert "method=GET" in tag_lines[0] and "status=200" in tag_lines[0]
    assert "caller=admin" in tag_lines[0] and " INFO tagloop.api.request " in tag_lines[0]
    assert "route=/api/v1/stats status=200" in text
    assert _mode(log_file) & 0o077 == 0


# --- a private data dir -----------------------------------------------------------------


def test_prepare_makes_the_data_dir_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data")
    prepare(settings)
    assert _mode(settings.data_dir) == 0o700
    assert _mode(settings.data_dir.parent) == 0o700  # a parent it had to create, too
    assert _mode(settings.admin_token_path) == 0o600
    db = settings.data_dir / "tagloop.db"
    assert db.exists() and _mode(db) & 0o077 == 0
    BlobStore(settings.blob_url)
    assert _mode(settings.data_dir / "blobs") == 0o700


def test_prepare_tightens_an_older_world_readable_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    old_token = data / "admin.token"
    old_token.write_text("tl_not-a-valid-token\n")
    old_token.chmod(0o644)
    settings = Settings(data_dir=data)
    prepare(settings)
    assert _mode(data) == 0o700
    assert _mode(old_token) == 0o600  # rewritten with a valid token, owner-only


def test_blob_store_and_migrations_create_a_missing_data_dir_private(tmp_path: Path) -> None:
    from tagloop.db.migrate import upgrade_database

    BlobStore(str(tmp_path / "a" / "blobs"))
    assert _mode(tmp_path / "a") == 0o700 and _mode(tmp_path / "a" / "blobs") == 0o700
    upgrade_database(f"sqlite:///{tmp_path / 'b' / 'tagloop.db'}")
    assert _mode(tmp_path / "b") == 0o700


# --- signed media URLs ------------------------------------------------------------------

MEDIA = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


def _clip_with_media(h: ApiHarness, *, sha: str = "a") -> int:
    (clip_id,) = add_clips(h.settings.database_url, 1, sha=sha)
    key = f"previews/test/{clip_id}.mp4"
    BlobStore(h.settings.blob_url).put_bytes(key, MEDIA)
    with session_scope(h.settings.database_url) as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        clip.preview_uri = key
    r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": "cat"})
    assert r.status_code in (201, 409), r.text
    r = h.client.post(
        f"/api/v1/clips/{clip_id}/labels", headers=h.annotator, json={"tags": ["cat"]}
    )
    assert r.status_code == 201, r.text
    return clip_id


def _signed_url(h: ApiHarness, clip_id: int) -> str:
    r = h.client.get(
        "/api/v1/export",
        headers=h.annotator,
        params={"format": "label-studio", "signed_urls": True},
    )
    assert r.status_code == 200, r.text
    url: str = next(t["data"]["video"] for t in r.json() if t["id"] == clip_id)
    return url


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_signed_media_url_works_without_a_token(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url)
    clip_id = _clip_with_media(h)
    before = int(time.time())
    url = _signed_url(h, clip_id)
    parts = urlsplit(url)
    assert parts.path == f"/api/v1/clips/{clip_id}/media"
    query = parse_qs(parts.query)
    expires = int(query["expires"][0])
    assert before + 3600 <= expires <= int(time.time()) + 3600
    assert re.fullmatch(r"[0-9a-f]{64}", query["sig"][0])

    r = h.client.get(_path(url))  # no Authorization header
    assert r.status_code == 200 and r.content == MEDIA
    r = h.client.get(_path(url), headers={"Range": "bytes=4-11"})
    assert r.status_code == 206 and r.content == b"ftypmp42"
    # Another API process on the same data dir agrees on the key.
    other = TestClient(create_app(h.settings))
    assert other.get(_path(url)).status_code == 200
    key_file = h.settings.media_url_secret_path
    assert key_file.exists() and _mode(key_file) == 0o600

    # Unsigned still needs the token; the token still works.
    assert h.client.get(parts.path).status_code == 401
    assert h.client.get(parts.path, headers=h.annotator).status_code == 200
    # The signature opens this clip's media only.
    assert h.client.get(f"/api/v1/clips/{clip_id}/thumbnail?{parts.query}").status_code == 401
    assert h.client.get(f"/api/v1/clips/{clip_id}?{parts.query}").status_code == 401


def test_tampered_and_expired_signed_urls_are_refused(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url)
    clip_id = _clip_with_media(h)
    other_clip = _clip_with_media(h, sha="b")
    url = _signed_url(h, clip_id)
    query = parse_qs(urlsplit(url).query)
    expires, sig = query["expires"][0], query["sig"][0]
    media = f"/api/v1/clips/{clip_id}/media"

    def code(path: str) -> tuple[int, str]:
        r = h.client.get(path)
        return r.status_code, r.json()["error"]["code"]

    tampered = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert code(f"{media}?expires={expires}&sig={tampered}") == (403, "invalid_signature")
    later = int(expires) + 3600  # stretching the expiry breaks the signature
    assert code(f"{media}?expires={later}&sig={sig}") == (403, "invalid_signature")
    assert code(f"/api/v1/clips/{other_clip}/media?expires={expires}&sig={sig}") == (
        403,
        "invalid_signature",
    )
    assert code(f"{media}?expires={expires}") == (403, "invalid_signature")
    assert code(f"{media}?sig={sig}") == (403, "invalid_signature")
    assert code(f"{media}?expires=soon&sig={sig}") == (403, "invalid_signature")
    assert code(f"{media}?expires={expires}&sig=%C3%A9") == (403, "invalid_signature")

    key = media_url_key(h.settings)
    past = int(time.time()) - 5
    expired = f"{media}?expires={past}&sig={media_signature(key, clip_id, past)}"
    assert code(expired) == (403, "signature_expired")
    # A token does not rescue a bad signature: the URL says how it authenticates.
    r = h.client.get(f"{media}?expires={expires}&sig={tampered}", headers=h.admin)
    assert r.status_code == 403


def test_a_configured_media_url_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    h = make_api(
        tmp_path,
        f"sqlite:///{tmp_path / 'tagloop.db'}",
        media_url_secret="configured-secret",
        media_url_ttl_seconds=60,
    )
    clip_id = _clip_with_media(h)
    url = _signed_url(h, clip_id)
    query = parse_qs(urlsplit(url).query)
    expires = int(query["expires"][0])
    assert expires <= int(time.time()) + 60
    assert query["sig"][0] == media_signature(b"configured-secret", clip_id, expires)
    assert h.client.get(_path(url)).status_code == 200
    assert not h.settings.media_url_secret_path.exists()
