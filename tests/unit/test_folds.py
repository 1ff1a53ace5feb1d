"""Grouped folds, temperature calibration and a probe head's C chosen by cross-validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagloop.training.folds import fit_temperature, grouped_folds
from tagloop.training.loss import multitask_loss, probabilities
from tagloop.training.probe_fit import C_GRID, fit_head, fit_linear
from tagloop.vocabulary import TagVocabulary

FOUR = TagVocabulary.from_pairs((f"c{i}", "class") for i in range(4))


def test_folds_hold_whole_videos_and_are_balanced_and_seeded() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=300)
    folds = grouped_folds(groups, k=5, seed=3)
    assert folds is not None and set(np.unique(folds)) == set(range(5))
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1  # a video never spans two folds
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= np.bincount(groups).max()
    assert np.array_equal(folds, grouped_folds(groups, k=5, seed=3))
    assert not np.array_equal(folds, grouped_folds(groups, k=5, seed=4))


def test_too_few_videos_or_clips_make_no_folds() -> None:
    assert grouped_folds(np.array([1, 1, 2, 2, 3, 3]), k=5) is None  # 3 videos
    assert grouped_folds(np.arange(7), k=5) is None  # 7 clips: not 2 folds of 4
    eight = grouped_folds(np.arange(8), k=5)  # 8 clips: 2 folds of 4, not 5 of 1-2
    assert eight is not None and np.bincount(eight).tolist() == [4, 4]
    with pytest.raises(ValueError):
        grouped_folds(np.zeros((2, 2)), k=2)


def _task(n: int, *, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 4-class task on ``d`` features, 2 of them informative: few labels overfit easily."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, 0] += torch.tensor([1.5, -1.5, 1.5, -1.5], dtype=torch.float64)[y]
    x[:, 1] += torch.tensor([1.5, 1.5, -1.5, -1.5], dtype=torch.float64)[y]
    targets = torch.nn.functional.one_hot(y, 4).double()
    return x, targets, torch.ones(n, 4, dtype=torch.bool)


def _nll(weight: torch.Tensor, bias: torch.Tensor, data: tuple[torch.Tensor, ...]) -> float:
    x, t, k = data
    return float(multitask_loss(x @ weight.T + bias, t, k, vocab=FOUR))


def test_temperature_undoes_a_known_overconfidence() -> None:
    x, t, k = _task(400, d=2, seed=1)
    w, b = fit_linear(x, t, k, vocab=FOUR, l2=1e-3)
    logits = (x @ w.T + b) * 4.0  # a calibrated model made four times too sure

    temperature, calibrated, raw = fit_temperature(
        logits, lambda z: multitask_loss(z, t, k, vocab=FOUR)
    )
    assert 3.0 <= temperature <= 5.5
    assert calibrated < raw


def test_cross_validated_head_is_calibrated_and_beats_the_default_c_at_few_labels() -> None:
    train = _task(60, d=400, seed=2)
    test = _task(2000, d=400, seed=3)
    folds = grouped_folds(np.arange(60), k=5, seed=0)
    fitted = fit_head(train, None, vocab=FOUR, folds=folds)
    assert fitted is not None
    (weight, bias), info = fitted
    assert info["chosen_by"] == "folds" and info["folds"] == 5
    assert set(info["scores"]) == {str(c) for c in C_GRID}
    assert info["temperature"] > 0 and info["oof_loss_calibrated"] <= info["oof_loss"]

    default = fit_head(train, None, vocab=FOUR)  # no folds, no validation: C = 1, uncalibrated
    assert default is not None and default[1]["chosen_by"] == "default"
    cv_nll, default_nll = _nll(weight, bias, test), _nll(*default[0], test)
    assert cv_nll < default_nll  # 400 features, 60 labels: C = 1 is badly overconfident
    assert cv_nll < 1.5 * math.log(4)  # no worse than a modest margin over chance
    accuracy = probabilities(test[0] @ weight.T + bias, vocab=FOUR).argmax(1) == test[1].argmax(1)
    assert float(accuracy.double().mean()) > 0.35  # chance is 0.25


def test_grouping_keeps_a_videos_twins_out_of_its_fold() -> None:
    """Labels that are pure noise per video, three near-identical clips per video: folds by
    clip score the memorised twins; folds by video see no signal, as a new video would."""
    g = torch.Generator().manual_seed(5)
    n_videos, per = 30, 3
    base = torch.randn(n_videos, 50, generator=g, dtype=torch.float64)
    x = base.repeat_interleave(per, 0) + 0.01 * torch.randn(
        n_videos * per, 50, generator=g, dtype=torch.float64
    )
    y = torch.randint(0, 4, (n_videos,), generator=g).repeat_interleave(per)
    data = (x, torch.nn.functional.one_hot(y, 4).double(), torch.ones(len(y), 4, dtype=torch.bool))
    videos = np.repeat(np.arange(n_videos), per)
    by_clip = fit_head(data, None, vocab=FOUR, folds=grouped_folds(np.arange(len(y)), k=5))
    by_video = fit_head(data, None, vocab=FOUR, folds=grouped_folds(videos, k=5))
    assert by_clip is not None and by_video is not None
    assert by_clip[1]["oof_score"] > 0.8  # the twins give the answer away
    assert by_video[1]["oof_score"] < 0.5  # chance is 0.25
