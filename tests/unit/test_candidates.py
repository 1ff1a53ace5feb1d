"""A probe round fits each linear candidate and serves the one the out-of-fold scores favour."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion.config import FusionConfig
from tagloop.fusion.probe import LinearProbe
from tagloop.training.candidates import candidate_key, probe_candidates
from tagloop.training.dataset import LabeledClip
from tagloop.training.loop import TrainOptions, train_model
from tagloop.vocabulary import TagVocabulary

CONFIG = FusionConfig(
    frames_per_clip=2,
    frame_size=8,
    n_mels=16,
    visual_channels=(4, 8),
    audio_channels=(4, 8),
    hidden_dim=16,
    probe_visual="pixels",  # no encoder to load: the candidates differ in their audio
)
OPTIONS = TrainOptions(audio_frames=None, num_threads=1, cv_folds=4)
TWO = TagVocabulary.from_pairs((f"t{i}", "when") for i in range(2))


def timing_clips(n: int, *, seed: int, first: int = 0) -> list[LabeledClip]:
    """Class 0: a band is loud in the clip's first half; class 1: in its second half. Band
    means, stds, minima and maxima are the same for both: only time bins can tell them apart.
    Two clips per video (``group``)."""
    gen = torch.Generator().manual_seed(seed)
    clips = []
    for i in range(n):
        label = i % 2
        logmel = torch.randn(CONFIG.n_mels, 32, generator=gen) - 5.0
        start = 0 if label == 0 else 16
        logmel[4:8, start : start + 16] += 3.0
        frames = torch.randint(0, 256, (2, 3, 8, 8), generator=gen, dtype=torch.uint8)
        targets = np.eye(2, dtype=np.float32)[label]
        clips.append(
            LabeledClip(
                clip_id=first + i,
                tensors=ClipTensors(frames=frames, logmel=logmel.half(), audio_mask=True),
                targets=targets,
                known=np.ones(2, bool),
                group=(first + i) // 2,
            )
        )
    return clips


def test_the_candidates_are_the_configured_probe_and_the_floor() -> None:
    embedding = replace(CONFIG, probe_visual="embedding")
    names = [(n, c.probe_visual, c.probe_audio) for n, c in probe_candidates(embedding)]
    assert names == [
        ("configured", "embedding", "bins"),
        ("embedding_stats", "embedding", "stats"),
        ("floor", "pixels", "stats"),
    ]
    assert [n for n, _ in probe_candidates(CONFIG)] == ["configured", "floor"]
    floor = replace(CONFIG, probe_audio="stats")
    assert [n for n, _ in probe_candidates(floor)] == ["configured"]  # it is the floor


def test_candidate_key_prefers_the_score_then_the_lower_loss() -> None:
    def fit(score: float | None, loss: float) -> dict[str, object]:
        return {"heads": {"central": {"oof_score": score, "oof_loss_calibrated": loss}}}

    assert candidate_key(fit(0.8, 0.5)) > candidate_key(fit(0.7, 0.1))
    assert candidate_key(fit(0.8, 0.4)) > candidate_key(fit(0.8, 0.5))
    assert candidate_key(fit(None, 0.1)) < candidate_key(fit(0.0, 9.0))


@pytest.fixture(scope="module")
def fitted() -> tuple[object, list[LabeledClip]]:
    train = timing_clips(48, seed=0)
    test = timing_clips(200, seed=1, first=1000)
    result = train_model(
        kind="probe", vocab=TWO, config=CONFIG, train=train, val=[], options=OPTIONS
    )
    return result, test


def test_the_round_serves_the_candidate_with_the_best_out_of_fold_score(
    fitted: tuple[object, list[LabeledClip]],
) -> None:
    result, test = fitted
    candidates = result.metrics["candidates"]  # type: ignore[attr-defined]
    assert [c["name"] for c in candidates] == ["configured", "floor"]
    assert sum(c["chosen"] for c in candidates) == 1
    chosen = next(c for c in candidates if c["chosen"])
    assert chosen["oof_score"] == max(c["oof_score"] for c in candidates)
    model = result.model  # type: ignore[attr-defined]
    assert isinstance(model, LinearProbe)
    assert (model.config.probe_visual, model.config.probe_audio) == (
        chosen["visual"],
        chosen["audio"],
    )
    # Here only time bins carry the class: the configured probe wins, the floor is at chance.
    assert chosen["name"] == "configured"
    floor = next(c for c in candidates if c["name"] == "floor")
    assert chosen["oof_score"] >= 0.9 and floor["oof_score"] <= 0.75
    frames = torch.stack([c.tensors.frames for c in test])
    logmel = torch.stack([c.tensors.logmel for c in test]).float()
    with torch.no_grad():
        probs = torch.softmax(model(frames, logmel).logits, dim=1)
    truth = torch.tensor([int(c.targets.argmax()) for c in test])
    assert float((probs.argmax(1) == truth).double().mean()) >= 0.9
