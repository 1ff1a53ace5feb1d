"""Racing uploads and imports of the same new file against a real uvicorn API, on SQLite and
PostgreSQL: every request answers 202 with one and the same video, one row, one blob, no
orphan; and a duplicate answers with the existing video's real clip count."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Job, Video
from tests.conftest import VIDEOS
from tests.integration.api_helpers import make_api, upload
from tests.integration.stack_helpers import running_stack, stack_settings

N_UPLOADS, N_IMPORTS = 8, 2
# Several new files, one burst each: one burst of the old code failed about half the time.
FILES = ["carphone_qcif_noaudio.mp4", "pancake_h264_opus.mkv", "bbb_vp8_vorbis_1s.webm"]


def blob_files(blob_root: Path, sub: str) -> list[Path]:
    root = blob_root / sub
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def burst(api_url: str, token: str, src: Path, import_path: Path) -> list[tuple[int, Any]]:
    """N_UPLOADS uploads (each under its own file name) and N_IMPORTS imports of the same
    bytes, released at once."""
    data = src.read_bytes()
    n = N_UPLOADS + N_IMPORTS
    barrier = threading.Barrier(n)
    answers: list[tuple[int, Any]] = [(0, None)] * n

    def send(i: int) -> None:
        with httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as c:
            barrier.wait()
            if i < N_UPLOADS:
                files = {"file": (f"race-{i}{src.suffix}", data, "video/mp4")}
                r = c.post("/api/v1/videos", files=files)
            else:
                r = c.post("/api/v1/videos/import", json={"path": str(import_path)})
        try:
            answers[i] = (r.status_code, r.json())
        except ValueError:
            answers[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return answers


def test_racing_same_content_ingests_get_one_video(tmp_path: Path, db_url: str) -> None:
    imports = tmp_path / "imports"
    imports.mkdir()
    settings = stack_settings(tmp_path, database_url=db_url, broker_url="", import_roots=[imports])
    blob_root = Path(settings.blob_url)
    with running_stack(settings, ["api"]):
        token = settings.admin_token_path.read_text().strip()
        ids: list[int] = []
        for name in FILES:
            src = VIDEOS / name
            import_path = imports / f"imported-{name}"
            shutil.copyfile(src, import_path)
            answers = burst(settings.api_url, token, src, import_path)

            assert [status for status, _ in answers] == [202] * len(answers), answers
            videos = [body for _, body in answers]
            assert len({v["id"] for v in videos}) == 1, videos
            # Exactly one request created it; every other one was told it is a duplicate.
            assert sorted(v["duplicate"] for v in videos) == [False] + [True] * (len(videos) - 1)
            assert len({v["job_id"] for v in videos if v["job_id"] is not None}) == 1
            ids.append(videos[0]["id"])
            with session_scope(db_url) as s:
                video = s.scalar(select(Video).where(Video.sha256 == videos[0]["sha256"]))
                assert video is not None and video.id == ids[-1]
                jobs = s.scalars(select(Job).where(Job.kind == "process_video")).all()
                assert sum(j.params["video_id"] == video.id for j in jobs) == 1
                blob_uri = video.blob_uri
            assert (blob_root / blob_uri).is_file()

        with session_scope(db_url) as s:
            assert s.scalar(select(func.count(Video.id))) == len(FILES)
        # One blob per video, none left over from a losing request, no upload left behind.
        assert len(blob_files(blob_root, "videos")) == len(FILES)
        assert blob_files(blob_root, "incoming") == []
        assert len(set(ids)) == len(FILES)


def test_duplicate_answers_with_the_real_clip_count(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url, import_roots=[tmp_path / "imports"])
    src = VIDEOS / "carphone_qcif_noaudio.mp4"
    status, first = upload(h, src)
    assert status == 202 and first["duplicate"] is False and first["n_clips"] == 0
    with session_scope(db_url) as s:  # as if a worker had processed it into 3 clips
        s.add_all(
            Clip(video_id=first["id"], index=i, start_s=float(i), end_s=i + 1.0) for i in range(3)
        )
    status, again = upload(h, src, name="again.mp4")
    assert status == 202 and again["duplicate"] is True and again["id"] == first["id"]
    assert again["n_clips"] == 3
    (tmp_path / "imports").mkdir()
    shutil.copyfile(src, tmp_path / "imports" / "copy.mp4")
    r = h.client.post(
        "/api/v1/videos/import", headers=h.admin, json={"path": str(tmp_path / "imports/copy.mp4")}
    )
    assert r.status_code == 202 and r.json()["duplicate"] is True and r.json()["n_clips"] == 3
