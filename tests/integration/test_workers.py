"""The seven real files through the real API and real Celery workers, on both runtime modes:
Redis broker + PostgreSQL, and the embedded SQLAlchemy/SQLite broker + SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tagloop.config import Settings
from tests.conftest import VIDEOS
from tests.integration.stack_helpers import running_stack, stack_settings

# file -> (has_audio, approximate duration from shared/data/videos/README.md)
EXPECTED = {
    "ucf_style_mpeg4_mp3.avi": (True, 6.6),
    "kinetics_style_noaudio.mp4": (False, 10.0),
    "pancake_h264_opus.mkv": (True, 10.4),
    "bbb_vp8_vorbis_1s.webm": (True, 1.0),
    "bbb_h264_aac_6ch.mp4": (True, 5.3),
    "carphone_qcif_noaudio.mp4": (False, 4.0),
    "moviepy_audio_edge.mp4": (True, 11.2),
}


@pytest.fixture(params=["redis-postgresql", "sqlite-embedded"])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite-embedded":
        return {
            "database_url": f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
            "broker_url": f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        }
    return {
        "database_url": request.getfixturevalue("pg_url"),
        "broker_url": request.getfixturevalue("redis_url"),
    }


def test_real_files_end_to_end(tmp_path: Path, mode: dict[str, str]) -> None:
    settings = stack_settings(tmp_path, clip_seconds=5.0, **mode)
    with running_stack(settings, ["api", "worker"]) as (_, client):
        uploaded = {name: client.upload_video(VIDEOS / name) for name in EXPECTED}
        assert all(v["status"] == "queued" for v in uploaded.values())
        done = client.wait_for_videos([v["id"] for v in uploaded.values()], timeout_s=300)
        by_name = {v["filename"]: v for v in done}
        for name, (has_audio, duration) in EXPECTED.items():
            v = by_name[name]
            assert v["status"] == "ready", (name, v["error_code"], v["error_message"])
            assert v["has_audio"] is has_audio, name
            assert abs(v["duration_s"] - duration) < 0.35, (name, v["duration_s"])
            # 5 s clips, a short tail merged into the last clip, at least one clip.
            assert v["n_clips"] == max(
                1, int(v["duration_s"] // 5 + (v["duration_s"] % 5 >= 2.5))
            ), name
            clips = client.list_clips(video_id=v["id"])
            assert [c["index"] for c in clips] == list(range(v["n_clips"]))
            assert all(c["has_audio"] is has_audio for c in clips)
            assert clips[-1]["end_s"] == pytest.approx(v["duration_s"], abs=0.35)
            job = client.get_job(uploaded[name]["job_id"])
            assert job["status"] == "succeeded" and job["progress"] == 1.0
    _check_stored_embeddings(settings)


def _check_stored_embeddings(settings: Settings) -> None:
    """Every clip's tensor file holds its keyframe embedding, computed once at ingest."""
    from tagloop.db.engine import session_scope
    from tagloop.db.models import Clip
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.storage import BlobStore

    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        uris = [str(u) for (u,) in session.query(Clip.tensor_uri).all()]
    vectors = []
    for uri in uris:
        tensors = load_clip_tensors(store.get_bytes(uri))
        assert tensors.visual_embedding is not None, uri
        assert tensors.visual_embedding.shape == (1280,)
        assert torch.isfinite(tensors.visual_embedding).all()
        vectors.append(tensors.visual_embedding)
    stacked = torch.stack(vectors)
    assert len(uris) >= len(EXPECTED)
    assert stacked.std(dim=0).mean() > 0.01  # different pictures, different vectors


def test_truncated_video_fails_with_code_and_keeps_others(
    tmp_path: Path, mode: dict[str, str]
) -> None:
    settings = stack_settings(tmp_path, **mode)
    good = VIDEOS / "carphone_qcif_noaudio.mp4"
    src = (VIDEOS / "pancake_h264_opus.mkv").read_bytes()
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(src[: len(src) * 2 // 5])
    with running_stack(settings, ["api", "worker"]) as (_, client):
        ok = client.upload_video(good)
        try:
            bad = client.upload_video(truncated)
        except Exception as exc:  # rejected at upload is also a clear outcome
            assert getattr(exc, "code", "") in ("truncated_media", "unreadable_media"), exc
            bad = None
        ids = [ok["id"]] + ([bad["id"]] if bad else [])
        done = {v["id"]: v for v in client.wait_for_videos(ids, timeout_s=120)}
        assert done[ok["id"]]["status"] == "ready"
        if bad:
            v = done[bad["id"]]
            assert v["status"] == "failed" and v["error_code"] == "truncated_media", v
            assert v["n_clips"] == 0 and v["error_message"]
