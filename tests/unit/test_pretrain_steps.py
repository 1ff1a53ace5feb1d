"""The pretraining step floor (``PretrainOptions.min_steps``): a small pool gets more epochs so
the encoders see enough optimiser steps; a large pool, already past the floor, is unchanged;
and what the service's job asks for (``Settings.pretrain_min_steps``)."""

from __future__ import annotations

import pytest
import torch

from tagloop.config import Settings
from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion import FusionConfig
from tagloop.pipeline.pretrain import DEFAULT_MIN_STEPS, min_steps, pretrain_options
from tagloop.training.pretrain import (
    PretrainOptions,
    pack_pool,
    planned_epochs,
    pretrain_encoders,
)

CONFIG = FusionConfig(
    frames_per_clip=4,
    frame_size=16,
    n_mels=16,
    visual_channels=(4, 8),
    audio_channels=(4, 8),
    hidden_dim=16,
)
TINY = PretrainOptions(epochs=2, batch_size=8, embed_dim=8, audio_frames=16, num_threads=1)


def random_clips(n: int) -> list[ClipTensors]:
    gen = torch.Generator().manual_seed(0)
    return [
        ClipTensors(
            frames=torch.randint(0, 255, (4, 3, 16, 16), generator=gen, dtype=torch.uint8),
            logmel=torch.randn(16, 20, generator=gen).to(torch.float16),
            audio_mask=True,
        )
        for _ in range(n)
    ]


def run(n_clips: int, options: PretrainOptions) -> list[tuple[int, int]]:
    """``(epoch, epochs)`` as the progress callback saw them."""
    seen: list[tuple[int, int]] = []
    pool = pack_pool(iter(random_clips(n_clips)), config=CONFIG, options=options)
    result = pretrain_encoders(
        pool, config=CONFIG, options=options, progress=lambda e, t, _: seen.append((e, t))
    )
    assert [r["epoch"] for r in result.history] == [e for e, _ in seen]
    return seen


def test_the_floor_raises_the_epochs_of_a_tiny_pool() -> None:
    # 20 clips: 4 held back, 16 to train on, 2 steps of 8 per epoch; 2 epochs are 4 steps.
    assert run(20, TINY) == [(1, 2), (2, 2)]
    floored = PretrainOptions.from_dict({**TINY.to_dict(), "min_steps": 7})
    assert run(20, floored) == [(e, 4) for e in range(1, 5)]  # ceil(7 / 2) = 4 epochs


def test_the_floor_leaves_a_pool_already_past_it_alone() -> None:
    # 60 clips: 48 to train on, 6 steps per epoch; 2 epochs (12 steps) already reach 10.
    floored = PretrainOptions.from_dict({**TINY.to_dict(), "min_steps": 10})
    assert run(60, floored) == [(1, 2), (2, 2)]


def test_planned_epochs_at_service_scale() -> None:
    service = PretrainOptions(min_steps=DEFAULT_MIN_STEPS)
    # The AV-digits pool: 2,500 clips, 500 held back, 31 steps of 64 per epoch.
    assert planned_epochs(service, steps_per_epoch=2_000 // 64) == -(-DEFAULT_MIN_STEPS // 31)
    assert planned_epochs(PretrainOptions(), steps_per_epoch=31) == 2  # no floor: as is
    # A pool at the max_clips cap: 512 held back, 304 steps per epoch, past the floor.
    assert planned_epochs(service, steps_per_epoch=(20_000 - 512) // 64) == service.epochs
    assert planned_epochs(PretrainOptions(epochs=5, min_steps=10), steps_per_epoch=1) == 10


def test_a_negative_floor_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        PretrainOptions(min_steps=-1)
    assert err.value.code == "bad_pretrain_options"


def test_the_service_floor_follows_the_settings() -> None:
    assert min_steps(Settings()) == DEFAULT_MIN_STEPS > 0
    assert min_steps(Settings(pretrain_epochs=3)) == 0  # an explicit epoch count as is
    assert min_steps(Settings(pretrain_epochs=3, pretrain_min_steps=50)) == 50
    assert min_steps(Settings(pretrain_min_steps=0)) == 0
    options = pretrain_options(Settings(torch_threads=1, pretrain_min_steps=120), seed=7)
    assert (options.min_steps, options.seed, options.num_threads) == (120, 7, 1)
    assert options.epochs == PretrainOptions().epochs
