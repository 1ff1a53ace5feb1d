"""Labeled sets for the active-learning simulation (``tagloop.simulation``): the offline demo
set rendered to clip tensors, or a cached AV-digits tensor file, split into a pool and a
held-out test set, with one mutually exclusive ``digit`` group as the vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion import FusionConfig
from tagloop.training.dataset import LabeledClip
from tagloop.vocabulary import TagVocabulary

DIGIT_GROUP = "digit"


@dataclass(frozen=True)
class SimulationSet:
    """A labeled set split for the simulation.

    pool: the clips the strategies pick from (labels hidden until picked); test: held out,
    never labeled. pool_videos: ``(len(pool),)`` int64, the video of each pool clip (the
    per-video cap). config: the model architecture matching the tensors.
    """

    name: str
    pool: list[LabeledClip]
    test: list[LabeledClip]
    pool_videos: np.ndarray
    vocab: TagVocabulary
    config: FusionConfig


def digit_vocab() -> TagVocabulary:
    """``digit_0`` .. ``digit_9``, one mutually exclusive group."""
    return TagVocabulary.from_pairs((f"digit_{d}", DIGIT_GROUP) for d in range(10))


def _digit_clip(clip_id: int, tensors: ClipTensors, digit: int) -> LabeledClip:
    targets = np.zeros(10, dtype=np.float32)
    targets[digit] = 1.0
    return LabeledClip(clip_id=clip_id, tensors=tensors, targets=targets, known=np.ones(10, bool))


def _keep_frames(frames: torch.Tensor, keep: int | None) -> torch.Tensor:
    """``(T, 3, H, W)`` -> ``(keep, 3, H, W)``: evenly spaced frames (None: all)."""
    if keep is None or keep >= frames.shape[0]:
        return frames
    index = torch.linspace(0, frames.shape[0] - 1, keep).round().long()
    return frames[index].contiguous()


def _split_set(
    name: str, clips: list[LabeledClip], is_test: Sequence[bool], config: FusionConfig
) -> SimulationSet:
    pool = [c for c, t in zip(clips, is_test, strict=True) if not t]
    test = [c for c, t in zip(clips, is_test, strict=True) if t]
    if not pool or not test:
        raise InvalidInput(f"{name}: need both pool and test clips", code="bad_simulation_set")
    # Every AV-digit clip is its own recording, so its own video.
    videos = np.asarray([c.clip_id for c in pool], dtype=np.int64)
    return SimulationSet(
        name=name, pool=pool, test=test, pool_videos=videos, vocab=digit_vocab(), config=config
    )


def load_demo_set(
    *, n: int, seed: int = 0, config: FusionConfig | None = None, frames: int | None = None
) -> SimulationSet:
    """The offline demo set (``build_demo_samples``) rendered straight to clip tensors.

    Its ``test`` split is held out. ``frames`` keeps that many frames per clip (the demo's
    frames are one still image repeated, so fewer frames only saves time).
    """
    from tagloop.datasets.av_digits import build_demo_samples
    from tagloop.training.dataset import render_av_sample

    base = config or FusionConfig()
    config = replace(base, frames_per_clip=frames) if frames else base
    samples = build_demo_samples(n=n, seed=seed)
    clips = []
    for i, sample in enumerate(samples):
        tensors = render_av_sample(
            sample,
            frames_per_clip=config.frames_per_clip,
            frame_size=config.frame_size,
            n_mels=config.n_mels,
            sample_rate=16_000,
            clip_seconds=0.5,
        )
        clips.append(_digit_clip(i, tensors, sample.digit))
    return _split_set("demo", clips, [s.split == "test" for s in samples], config)


def load_tensor_set(
    path: Path, *, frames: int | None = None, config: FusionConfig | None = None
) -> SimulationSet:
    """An AV-digits tensor cache (``tests/benchmarks/av_digits_tensors.py``): a ``torch.save``
    dict with frames ``(N, T, 3, H, W)`` uint8, logmel ``(N, n_mels, S)``, audio_mask ``(N,)``,
    digit ``(N,)`` and is_test ``(N,)`` (the held-out speaker). Clip id = row."""
    if not path.is_file():
        raise InvalidInput(
            f"no tensor cache at {path} (build it: python -m tests.benchmarks.av_digits_tensors)",
            code="missing_tensors",
        )
    payload = torch.load(path, weights_only=True)
    missing = {"frames", "logmel", "audio_mask", "digit", "is_test"} - set(payload)
    if missing:
        raise InvalidInput(f"{path} lacks {sorted(missing)}", code="bad_tensor_cache")
    all_frames, logmel = payload["frames"], payload["logmel"]
    keep = frames or all_frames.shape[1]
    config = replace(
        config or FusionConfig(),
        frames_per_clip=min(keep, all_frames.shape[1]),
        frame_size=all_frames.shape[-1],
        n_mels=logmel.shape[1],
    )
    clips = [
        _digit_clip(
            row,
            ClipTensors(
                frames=_keep_frames(all_frames[row], frames),
                logmel=logmel[row],
                audio_mask=bool(payload["audio_mask"][row]),
            ),
            int(payload["digit"][row]),
        )
        for row in range(all_frames.shape[0])
    ]
    return _split_set("fsdd-mnist", clips, payload["is_test"].tolist(), config)


def describe_pool(data: SimulationSet) -> np.ndarray:
    """``(len(pool), D)`` float32 seed-round descriptors (``describe_clip``)."""
    from tagloop.features.descriptor import describe_clip

    return np.stack([describe_clip(c.tensors) for c in data.pool])
