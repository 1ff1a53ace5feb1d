"""REST contract on SQLite and PostgreSQL: auth, upload, dedupe, bad input, import roots,
pagination, clip media with Range, delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tagloop import pipeline
from tagloop.db.engine import session_scope
from tagloop.db.models import Job, Video
from tests.conftest import VIDEOS
from tests.integration.api_helpers import ApiHarness, make_api, upload


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    return make_api(tmp_path, db_url, import_roots=[tmp_path / "imports"])


def blob_files(h: ApiHarness, sub: str) -> list[Path]:
    root = Path(h.settings.blob_url) / sub
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_auth_and_roles(api: ApiHarness) -> None:
    c = api.client
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/api/v1/videos")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = c.get("/api/v1/videos", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert c.get("/api/v1/videos", headers=api.annotator).status_code == 200
    r = c.post("/api/v1/videos", headers=api.annotator, files={"file": ("a.mp4", b"x")})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    r = c.post("/api/v1/videos/import", headers=api.annotator, json={"path": "/x"})
    assert r.status_code == 403
    assert c.delete("/api/v1/videos/1", headers=api.annotator).status_code == 403
    assert c.get("/metrics", headers=api.annotator).status_code == 200
    assert c.get("/docs").status_code == 200
    assert "/api/v1/videos" in c.get("/openapi.json").json()["paths"]


def test_upload_dedupe_and_get(api: ApiHarness) -> None:
    src = VIDEOS / "pancake_h264_opus.mkv"
    status, first = upload(api, src)
    assert status == 202, first
    assert first["status"] == "queued" and first["duplicate"] is False
    assert first["has_audio"] is True and abs(first["duration_s"] - 10.4) < 0.3
    assert first["width"] == 426 and first["height"] == 240
    status, again = upload(api, src, name="renamed.mkv")
    assert status == 202 and again["duplicate"] is True and again["id"] == first["id"]
    assert len(blob_files(api, "videos")) == 1
    assert blob_files(api, "incoming") == []
    got = api.client.get(f"/api/v1/videos/{first['id']}", headers=api.admin).json()
    assert got["sha256"] == first["sha256"] and got["n_clips"] == 0
    r = api.client.get("/api/v1/videos/999999", headers=api.admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "video_not_found"
    job = api.client.get(f"/api/v1/jobs/{first['job_id']}", headers=api.admin).json()
    assert job["kind"] == "process_video" and job["status"] == "queued"


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "empty_file"), (b"this is a text file, not a video\n" * 20, "not_a_video")],
)
def test_bad_uploads_are_rejected_and_leave_nothing(
    api: ApiHarness, tmp_path: Path, content: bytes, code: str
) -> None:
    status, _ = upload(api, VIDEOS / "carphone_qcif_noaudio.mp4")
    assert status == 202
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    status, body = upload(api, bad)
    assert status == 422, body
    assert body["error"]["code"] == code
    # Nothing new stored and nothing already stored lost.
    videos = api.client.get("/api/v1/videos", headers=api.admin).json()["items"]
    assert [v["filename"] for v in videos] == ["carphone_qcif_noaudio.mp4"]
    assert len(blob_files(api, "videos")) == 1 and blob_files(api, "incoming") == []


def test_upload_size_limit(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url, upload_max_bytes=50_000)
    status, body = upload(h, VIDEOS / "pancake_h264_opus.mkv")
    assert status == 413 and body["error"]["code"] == "upload_too_large"
    assert blob_files(h, "incoming") == [] and blob_files(h, "videos") == []


def test_import_only_under_roots(api: ApiHarness, tmp_path: Path) -> None:
    roots = tmp_path / "imports"
    (roots / "sub").mkdir(parents=True)
    inside = roots / "sub" / "clip.mp4"
    inside.write_bytes((VIDEOS / "carphone_qcif_noaudio.mp4").read_bytes())
    outside = tmp_path / "secret.mp4"
    outside.write_bytes((VIDEOS / "bbb_vp8_vorbis_1s.webm").read_bytes())
    os.symlink(outside, roots / "link.mp4")
    c, h = api.client, api.admin

    r = c.post("/api/v1/videos/import", headers=h, json={"path": str(inside)})
    assert r.status_code == 202 and r.json()["filename"] == "clip.mp4"
    for path in (str(outside), f"{roots}/sub/../../secret.mp4", str(roots / "link.mp4")):
        r = c.post("/api/v1/videos/import", headers=h, json={"path": path})
        assert r.status_code == 403, path
        assert r.json()["error"]["code"] == "path_not_allowed"
    r = c.post("/api/v1/videos/import", headers=h, json={"path": str(roots / "missing.mp4")})
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
    r = c.post("/api/v1/videos/import", headers=h, json={})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_list_pagination_and_filters(api: ApiHarness) -> None:
    names = ["carphone_qcif_noaudio.mp4", "bbb_vp8_vorbis_1s.webm", "pancake_h264_opus.mkv"]
    ids = [upload(api, VIDEOS / n)[1]["id"] for n in names]
    c, h = api.client, api.admin
    page1 = c.get("/api/v1/videos", headers=h, params={"limit": 2}).json()
    assert [v["id"] for v in page1["items"]] == sorted(ids, reverse=True)[:2]
    page2 = c.get(
        "/api/v1/videos", headers=h, params={"limit": 2, "cursor": page1["next_cursor"]}
    ).json()
    assert [v["id"] for v in page2["items"]] == [min(ids)] and page2["next_cursor"] is None
    assert len(c.get("/api/v1/videos", headers=h, params={"status": "ready"}).json()["items"]) == 0
    r = c.get("/api/v1/videos", headers=h, params={"cursor": "garbage!"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"
    r = c.get("/api/v1/videos", headers=h, params={"status": "weird"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_status"


def test_clip_media_range_and_delete(api: ApiHarness) -> None:
    _, video = upload(api, VIDEOS / "bbb_h264_aac_6ch.mp4")
    # The worker's use case, run in-process here; the worker itself is tested separately.
    assert (
        pipeline.process_video(settings=api.settings, video_id=video["id"], job_id=video["job_id"])
        == "ready"
    )
    c, h = api.client, api.admin
    assert c.get(f"/api/v1/videos/{video['id']}", headers=h).json()["n_clips"] == 1
    clips = c.get("/api/v1/clips", headers=h, params={"video_id": video["id"]}).json()["items"]
    assert len(clips) == 1 and clips[0]["has_audio"] is True
    clip_id = clips[0]["id"]
    detail = c.get(f"/api/v1/clips/{clip_id}", headers=h).json()
    assert detail["labels"] == [] and detail["video_id"] == video["id"]
    assert len(c.get("/api/v1/clips", headers=h, params={"labeled": False}).json()["items"]) == 1

    full = c.get(f"/api/v1/clips/{clip_id}/media", headers=h)
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.headers["accept-ranges"] == "bytes" and full.content[4:8] == b"ftyp"
    part = c.get(f"/api/v1/clips/{clip_id}/media", headers={**h, "Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(full.content)}"
    assert part.content == full.content[100:300]
    r = c.get(f"/api/v1/clips/{clip_id}/media", headers={**h, "Range": "bytes=99999999-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    thumb = c.get(f"/api/v1/clips/{clip_id}/thumbnail", headers=h)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"

    assert c.delete(f"/api/v1/videos/{video['id']}", headers=h).status_code == 204
    assert c.get(f"/api/v1/videos/{video['id']}", headers=h).status_code == 404
    assert c.get(f"/api/v1/clips/{clip_id}", headers=h).status_code == 404
    assert blob_files(api, "videos") == [] and blob_files(api, "clips") == []
    with session_scope(api.settings.database_url) as s:
        assert s.query(Video).count() == 0
        assert s.query(Job).count() == 1  # the job history stays


def test_errors_are_json(api: ApiHarness) -> None:
    r = api.client.get("/api/v1/nothing-here", headers=api.admin)
    assert r.status_code == 404 and set(r.json()["error"]) >= {"code", "message"}
    r = api.client.get("/api/v1/videos", headers=api.admin, params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
