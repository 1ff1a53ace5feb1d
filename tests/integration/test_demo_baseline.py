"""The demo's random baseline reads what the service stored: demo clips ingested into SQLite
and a local blob store by the ingest use cases (run in-process; the workers around them are
tested in test_workers.py), then loaded back as a simulation set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip
from tagloop.demo_baseline import load_demo_simulation_set, random_curve
from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import load_clip_tensors
from tagloop.pipeline import ingest_path, process_video
from tagloop.storage import BlobStore


def ingest_demo(settings: Settings, labels: Path) -> tuple[dict[int, str], dict[int, int]]:
    """Ingest every demo video; (clip id -> digit, clip id -> video id)."""
    store = BlobStore(settings.blob_url)
    truth: dict[int, str] = {}
    video_of: dict[int, int] = {}
    for row in csv.DictReader(labels.open()):
        with session_scope(settings.database_url) as session:
            result = ingest_path(
                session, store=store, path=labels.parent / row["file"], max_bytes=None
            )
            video_id, job_id = result.video.id, result.job_id
        assert job_id is not None
        assert process_video(settings=settings, video_id=video_id, job_id=job_id) == "ready"
        with session_scope(settings.database_url) as session:
            for (clip_id,) in session.query(Clip.id).filter(Clip.video_id == video_id):
                truth[int(clip_id)] = row["digit"]
                video_of[int(clip_id)] = video_id
    return truth, video_of


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[int, str], dict]:
    root = tmp_path_factory.mktemp("demo-baseline")
    labels = write_av_dataset(build_demo_samples(n=8, seed=3), root / "demo-set")
    # The demo's clip length; the tensor sizes are the service defaults.
    settings = Settings(data_dir=root / "data", clip_seconds=2.0)
    upgrade_database(settings.database_url)
    truth, video_of = ingest_demo(settings, labels)
    return settings, truth, video_of


def test_loads_the_stored_tensors_with_digit_targets(service: tuple) -> None:
    settings, truth, video_of = service
    assert len(truth) == 8  # a 0.5 s demo video is one clip
    test_clips = sorted(truth)[:3]
    data = load_demo_simulation_set(settings=settings, truth=truth, test_clips=test_clips)

    assert [c.clip_id for c in data.test] == test_clips
    assert sorted(c.clip_id for c in data.pool) == sorted(set(truth) - set(test_clips))
    assert data.pool_videos.tolist() == [video_of[c.clip_id] for c in data.pool]
    assert (data.config.frames_per_clip, data.config.frame_size, data.config.n_mels) == (
        settings.frames_per_clip,
        settings.frame_size,
        settings.n_mels,
    )
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        uris = dict(session.query(Clip.id, Clip.tensor_uri))
    for clip in [*data.pool, *data.test]:
        stored = load_clip_tensors(store.get_bytes(str(uris[clip.clip_id])))
        assert clip.tensors.frames.shape == (
            settings.frames_per_clip,
            3,
            settings.frame_size,
            settings.frame_size,
        )
        assert torch.equal(clip.tensors.frames, stored.frames)
        assert torch.equal(clip.tensors.logmel, stored.logmel) and clip.tensors.audio_mask
        expected = np.zeros(10, dtype=np.float32)
        expected[int(truth[clip.clip_id])] = 1.0
        assert np.array_equal(clip.targets, expected) and clip.known.all()
    assert data.vocab.tags[int(truth[data.pool[0].clip_id])].endswith(truth[data.pool[0].clip_id])


def test_random_curve_trains_on_the_stored_tensors(service: tuple) -> None:
    settings, truth, _ = service
    data = load_demo_simulation_set(settings=settings, truth=truth, test_clips=sorted(truth)[:3])
    quick = settings.model_copy(update={"train_epochs": 1, "audio_frames": 128, "torch_threads": 1})
    curve = random_curve(data, label_counts=[2, 4], settings=quick)
    assert [n for n, _ in curve] == [2, 4] and all(0.0 <= a <= 1.0 for _, a in curve)


def test_refuses_clips_the_service_does_not_have(service: tuple) -> None:
    settings, truth, _ = service
    missing = max(truth) + 100
    with pytest.raises(InvalidInput) as err:
        load_demo_simulation_set(
            settings=settings, truth={**truth, missing: "3"}, test_clips=sorted(truth)[:2]
        )
    assert err.value.code == "missing_clip_tensors"
    with pytest.raises(InvalidInput) as err:
        load_demo_simulation_set(settings=settings, truth=truth, test_clips=[missing])
    assert err.value.code == "bad_demo_pool"
