"""A training round started from local branch weights (frozen): the version records what it
started from, its stored model carries those weights, and a missing file fails the round with
a code naming the path; the same for a torchvision-layout ResNet-18 file with
``visual_arch=resnet18``. In-process on SQLite with real demo clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import jobs as job_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, Label, ModelVersion
from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import load_clip_tensors
from tagloop.fusion import FusionConfig, build_model
from tagloop.fusion.resnet import ResNet18, ResNetVisualBranch
from tagloop.pipeline.training import train_round
from tagloop.storage import BlobStore
from tagloop.training.artifact import load_artifact
from tagloop.training.predict import predict_clips
from tests.integration.test_demo_baseline import ingest_demo


def test_a_round_starts_from_local_frozen_visual_weights(tmp_path: Path) -> None:
    labels = write_av_dataset(build_demo_samples(n=12, seed=6), tmp_path / "set")
    base = Settings(data_dir=tmp_path / "data", clip_seconds=2.0, train_epochs=2)
    upgrade_database(base.database_url)
    truth, _ = ingest_demo(base, labels)
    with session_scope(base.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for c, digit in truth.items():
            s.add(Label(clip_id=c, annotator="a", tags=[digit]))
    config = FusionConfig(
        frames_per_clip=base.frames_per_clip, frame_size=base.frame_size, n_mels=base.n_mels
    )
    torch.manual_seed(7)
    source = build_model("centralnet", vocab_size=10, config=config)
    weights = tmp_path / "pretrained-visual.pt"
    torch.save(source.state_dict(), weights)  # a whole model: its "visual." keys are used

    missing = base.model_copy(update={"visual_weights_path": tmp_path / "absent.pt"})
    with session_scope(base.database_url) as s:
        job_id = job_repo.create_job(s, kind="train", params={}).id
    with pytest.raises(InvalidInput) as err:
        train_round(settings=missing, job_id=job_id)
    assert err.value.code == "weights_not_found" and "absent.pt" in err.value.message

    settings = base.model_copy(update={"visual_weights_path": weights, "freeze_backbone": True})
    with session_scope(settings.database_url) as s:
        job_id = job_repo.create_job(s, kind="train", params={}).id
    outcome = train_round(settings=settings, job_id=job_id)
    with session_scope(settings.database_url) as s:
        version = s.get(ModelVersion, outcome.version_id)
        assert version is not None and version.status == "promoted"
        assert version.config["backbone"] == {
            "visual": str(weights),
            "audio": None,
            "frozen": True,
        }
        artifact_uri = str(version.artifact_uri)
    stored = load_artifact(BlobStore(settings.blob_url).get_bytes(artifact_uri)).model
    for key, value in source.visual.state_dict().items():
        assert torch.equal(stored.visual.state_dict()[key], value), key


@pytest.mark.parametrize("kind", ["probe", "centralnet"])
def test_a_round_starts_a_resnet18_visual_branch_from_a_torchvision_checkpoint(
    tmp_path: Path, kind: str
) -> None:
    labels = write_av_dataset(build_demo_samples(n=6, seed=8), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data",
        clip_seconds=2.0,
        train_epochs=1,
        # The probe (frozen ResNet features) below the default switch for pretrained branches,
        # else CentralNet: a weights file counts as pretrained, so both switches are set.
        probe_below_labels=500 if kind == "probe" else 0,
        probe_below_labels_pretrained=1000 if kind == "probe" else 0,
        visual_arch="resnet18",
        freeze_backbone=True,
    )
    upgrade_database(settings.database_url)
    truth, _ = ingest_demo(settings, labels)
    with session_scope(settings.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for c, digit in truth.items():
            s.add(Label(clip_id=c, annotator="a", tags=[digit]))
    torch.manual_seed(9)
    net = ResNet18()
    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(net.state_dict(), weights)  # as torchvision saves it, fc included
    settings = settings.model_copy(update={"visual_weights_path": weights})
    with session_scope(settings.database_url) as s:
        job_id = job_repo.create_job(s, kind="train", params={}).id
    outcome = train_round(settings=settings, job_id=job_id)
    with session_scope(settings.database_url) as s:
        version = s.get(ModelVersion, outcome.version_id)
        assert version is not None and version.status == "promoted"
        assert version.config["kind"] == kind
        assert version.config["fusion"]["visual_arch"] == "resnet18"
        assert version.config["backbone"] == {"visual": str(weights), "audio": None, "frozen": True}
        artifact_uri = str(version.artifact_uri)
        uris = [str(u) for (u,) in s.query(Clip.tensor_uri).filter(Clip.id.in_(list(truth)))]
    store = BlobStore(settings.blob_url)
    stored = load_artifact(store.get_bytes(artifact_uri))
    assert isinstance(stored.model.visual, ResNetVisualBranch)
    if kind == "probe":
        assert bool(stored.model.uses_branches)  # the ResNet embedding is one of its features
    theirs = net.state_dict()
    for key, value in stored.model.visual.state_dict().items():
        assert torch.equal(value, theirs[key]), key  # frozen: BN statistics included
    tensors = [load_clip_tensors(store.get_bytes(u)) for u in uris]
    preds = predict_clips(stored.model, tensors, vocab=stored.vocab, mc_passes=2)
    assert preds.probs.shape == (len(uris), 10) and np.isfinite(preds.probs).all()
    # One digit group: its tags share what its implicit "none" outcome leaves, and every clip
    # was labeled with a digit, so little is left to none.
    sums = preds.probs.sum(axis=1)
    assert ((sums > 0.9) & (sums <= 1.0 + 1e-6)).all(), sums
    assert preds.mc_probs is not None and preds.mc_probs.shape == (2, len(uris), 10)
