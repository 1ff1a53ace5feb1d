"""Pretraining through the API and a real worker: an admin starts a run on the pool, the run
stores its branch weights, and the next training round starts from them (the low-label probe
keeps them frozen, so the served model holds exactly the pretrained branches)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from tagloop.auth import create_token
from tagloop.client import ApiError, TagloopClient
from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import loop_state
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, QueueItem
from tagloop.features.clip_tensor import load_clip_tensors
from tagloop.features.descriptor import describe_clip
from tagloop.fusion import FusionConfig
from tagloop.pipeline.pretrain import pretrain_pool
from tagloop.pipeline.scoring import refill_queue
from tagloop.selection import seed_batch
from tagloop.storage import BlobStore
from tagloop.training.artifact import load_artifact
from tagloop.training.encoders import PretrainedEncoders
from tagloop.training.pretrain import load_encoder_state
from tests.integration.stack_helpers import running_stack, stack_settings
from tests.integration.test_demo_baseline import ingest_demo
from tests.integration.test_training_loop import wait_job


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_av_dataset(build_demo_samples(n=40, seed=11), tmp_path_factory.mktemp("demo"))


def test_a_round_after_pretraining_starts_from_its_weights(tmp_path: Path, demo_set: Path) -> None:
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        clip_seconds=2.0,
        pretrain_epochs=3,
        torch_threads=1,
        # Without pretraining 20 labels would train the full model; with a pretraining run the
        # switch is probe_below_labels_pretrained (1,000), so the round fits the probe.
        probe_below_labels=10,
    )
    rows = list(csv.DictReader(demo_set.open()))
    with running_stack(settings, ["api", "worker"]) as (_, client):
        for d in range(10):
            client.request("POST", "/api/v1/tags", json={"name": str(d), "group": "digit"})
        videos = [client.upload_video(demo_set.parent / r["file"]) for r in rows]
        client.wait_for_videos([v["id"] for v in videos], timeout_s=300)
        clips = [client.list_clips(video_id=v["id"])[0]["id"] for v in videos]

        with session_scope(settings.database_url) as s:
            token = create_token(s, name="ann", role="annotator")
        with pytest.raises(ApiError) as refused:
            TagloopClient(settings.api_url, token=token).request("POST", "/api/v1/models/pretrain")
        assert refused.value.http_status == 403

        job_id = client.request("POST", "/api/v1/models/pretrain").json()["job_id"]
        job = wait_job(client, job_id)
        assert job["status"] == "succeeded", job
        [run] = client.request("GET", "/api/v1/models/pretrain").json()
        assert run["job_id"] == job_id and run["params"]["n_clips"] == len(clips)
        assert "retrieval_top1" in run["params"]["metrics"]

        for clip_id, r in list(zip(clips, rows, strict=True))[:20]:
            client.request("POST", f"/api/v1/clips/{clip_id}/labels", json={"tags": [r["digit"]]})
        train_job = client.request("POST", "/api/v1/models/train").json()["job_id"]
        assert wait_job(client, train_job)["status"] == "succeeded"
        [version] = client.request("GET", "/api/v1/models").json()
        assert version["config"]["kind"] == "probe"  # 20 labels, past the switch without it
        assert version["config"]["capacity"] == {
            "labels": 20,
            "probe_below": settings.probe_below_labels_pretrained,
        }
        assert version["config"]["backbone"] == {"pretrain_job": job_id, "frozen": False}

    store = BlobStore(settings.blob_url)
    pretrained = torch.load(
        io.BytesIO(store.get_bytes(run["params"]["artifact_uri"])), weights_only=True
    )["state_dict"]
    served = load_artifact(store.get_bytes(f"models/{version['id']:06d}/model.pt")).model
    assert bool(served.uses_branches)
    for branch in ("visual", "audio"):
        for key, value in getattr(served, branch).state_dict().items():
            assert torch.equal(value, pretrained[f"{branch}.{key}"]), (branch, key)


def test_before_any_model_the_seed_batch_spans_the_pretrained_embeddings(tmp_path: Path) -> None:
    """After a pretraining run and before any model, the seed batch is k-center on the run's
    branch embeddings (not on raw descriptors): the queue holds exactly what seed_batch picks
    on them."""
    labels = write_av_dataset(build_demo_samples(n=30, seed=4), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data", clip_seconds=2.0, queue_size=8, pretrain_epochs=2
    )
    upgrade_database(settings.database_url)
    ingest_demo(settings, labels)
    with session_scope(settings.database_url) as s:
        job_id = loop_state.create_pretrain_job(s, trigger="manual").id
    outcome = pretrain_pool(settings=settings, job_id=job_id)
    store = BlobStore(settings.blob_url)
    assert refill_queue(settings=settings) == settings.queue_size

    with session_scope(settings.database_url) as s:
        clips = s.execute(select(Clip.id, Clip.video_id, Clip.tensor_uri).order_by(Clip.id)).all()
        queued = {int(c) for (c,) in s.query(QueueItem.clip_id)}
    tensors = [load_clip_tensors(store.get_bytes(str(uri))) for _, _, uri in clips]
    saved = load_encoder_state(store.get_bytes(outcome["artifact_uri"]))
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    embeddings = PretrainedEncoders(saved.state, config=config).embed(
        tensors, audio_frames=settings.audio_frames
    )
    expected = seed_batch(
        clip_ids=np.asarray([c for c, _, _ in clips], dtype=np.int64),
        descriptors=embeddings,
        video_ids=np.asarray([v for _, v, _ in clips], dtype=np.int64),
        batch_size=settings.queue_size,
        per_video_cap=settings.per_video_cap,
        seed=0,
    )
    assert queued == {int(c) for c in expected}
    on_descriptors = seed_batch(
        clip_ids=np.asarray([c for c, _, _ in clips], dtype=np.int64),
        descriptors=np.stack([describe_clip(t) for t in tensors]),
        video_ids=np.asarray([v for _, v, _ in clips], dtype=np.int64),
        batch_size=settings.queue_size,
        per_video_cap=settings.per_video_cap,
        seed=0,
    )
    assert set(on_descriptors) != set(expected)  # so the check above tells them apart
