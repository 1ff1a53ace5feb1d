"""The pieces of a training round that benchmarks reuse (``pipeline.training``): the split of
the labeled clips, the model shape and the training options follow the settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from tagloop.config import Settings
from tagloop.pipeline.training import round_config, round_options, split_labeled
from tagloop.training.dataset import LabeledClip
from tagloop.training.split import assign_splits


def _clips(ids: range) -> list[LabeledClip]:
    none: Any = None  # the split never looks at tensors or targets
    return [LabeledClip(clip_id=i, tensors=none, targets=none, known=none) for i in ids]


def test_split_is_the_stable_hash_split_and_covers_every_clip() -> None:
    clips = _clips(range(1, 201))
    train, val = split_labeled(clips, val_fraction=0.2)
    is_val = assign_splits(np.arange(1, 201), val_fraction=0.2)
    assert [c.clip_id for c in val] == [int(i) for i in np.flatnonzero(is_val) + 1]
    assert {c.clip_id for c in train} | {c.clip_id for c in val} == set(range(1, 201))
    assert not {c.clip_id for c in train} & {c.clip_id for c in val}
    again, _ = split_labeled(list(reversed(clips)), val_fraction=0.2)
    assert {c.clip_id for c in again} == {c.clip_id for c in train}  # order does not matter


def test_too_few_labels_validate_on_the_training_clips() -> None:
    one = _clips(range(1, 2))
    train, val = split_labeled(one, val_fraction=0.2)
    assert train is val and [c.clip_id for c in train] == [1]


def test_config_and_options_follow_the_settings() -> None:
    settings = Settings(
        visual_arch="resnet18", frame_size=64, train_epochs=7, train_patience=2, torch_threads=1
    )
    config = round_config(settings)
    assert (config.visual_arch, config.frame_size) == ("resnet18", 64)
    options = round_options(settings)
    assert (options.epochs, options.patience, options.num_threads) == (7, 2, 1)
