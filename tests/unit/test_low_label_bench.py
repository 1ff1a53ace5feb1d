"""The pure parts of the low-label benchmark (tests/benchmarks/bench_low_label.py): budget
sampling, the logistic-regression features and fit, the target logic, the table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagloop.config import Settings
from tagloop.features.logmel import LOG_FLOOR
from tests.benchmarks.bench_low_label import (
    choose_c,
    fit_logreg,
    logreg_features,
    row_space_logreg_predict,
    sample_budgets,
    service_kind,
    summarize,
    target_arm,
    target_met,
)


def test_budgets_are_nested_sorted_and_from_the_pool() -> None:
    pool = np.arange(100, 400)
    sets = sample_budgets(pool, (40, 10, 80), seed=3)
    assert sorted(sets) == [10, 40, 80]
    for budget, rows in sets.items():
        assert len(rows) == budget == len(set(rows.tolist()))
        assert np.all(np.diff(rows) > 0)
        assert set(rows.tolist()) <= set(pool.tolist())
    assert set(sets[10].tolist()) <= set(sets[40].tolist()) <= set(sets[80].tolist())


def test_budgets_depend_on_the_seed_only() -> None:
    pool = np.arange(300)
    again = sample_budgets(pool, (20,), seed=1)[20]
    assert np.array_equal(sample_budgets(pool, (20,), seed=1)[20], again)
    assert not np.array_equal(sample_budgets(pool, (20,), seed=2)[20], again)


def test_budget_beyond_the_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        sample_budgets(np.arange(5), (6,), seed=0)


def test_features_are_the_time_mean_image_then_the_cropped_logmel() -> None:
    frames = torch.zeros(2, 4, 3, 2, 2, dtype=torch.uint8)
    frames[0, :2] = 10  # two of four frames at 10: mean 5
    frames[1] = 200
    logmel = torch.arange(2 * 3 * 5, dtype=torch.float16).reshape(2, 3, 5)
    x = logreg_features(frames, logmel, audio_frames=2, chunk=1)
    assert x.shape == (2, 3 * 2 * 2 + 3 * 2)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0, :12], 5.0)
    np.testing.assert_allclose(x[1, :12], 200.0)
    # band-major flattening of the two leading columns
    np.testing.assert_allclose(x[0, 12:], logmel[0, :, :2].float().flatten().numpy())


def test_short_logmel_is_padded_with_the_log_floor_and_none_keeps_all() -> None:
    frames = torch.zeros(1, 1, 3, 1, 1, dtype=torch.uint8)
    logmel = torch.zeros(1, 2, 3)
    padded = logreg_features(frames, logmel, audio_frames=5)
    assert padded.shape == (1, 3 + 2 * 5)
    audio = padded[0, 3:].reshape(2, 5)
    np.testing.assert_allclose(audio[:, :3], 0.0)
    np.testing.assert_allclose(audio[:, 3:], math.log(LOG_FLOOR), rtol=1e-6)
    assert logreg_features(frames, logmel, audio_frames=None).shape == (1, 3 + 2 * 3)


def _blobs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = rng.standard_normal((3, d)) * 2
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def test_row_space_fit_decides_like_the_direct_fit() -> None:
    x, y = _blobs(30, 200, seed=0)  # more features than clips, as in the benchmark
    x_eval, _ = _blobs(60, 200, seed=1)
    direct = fit_logreg(x, y, c=0.05).predict(x_eval)
    by_c = row_space_logreg_predict(x, y, x_eval, grid=(1.0, 0.05), seed=0)
    assert sorted(by_c) == [0.05, 1.0]
    assert np.array_equal(by_c[0.05], direct)
    assert np.array_equal(by_c[1.0], fit_logreg(x, y, c=1.0).predict(x_eval))


def test_choose_c_scores_every_c_and_breaks_ties_to_the_smaller() -> None:
    x, y = _blobs(30, 20, seed=2)
    best, scores = choose_c(x, y, grid=(10.0, 1.0), folds=3, seed=0)
    assert set(scores) == {"10.0", "1.0"}
    assert scores[str(best)] == max(scores.values())
    if scores["10.0"] == scores["1.0"]:
        assert best == 1.0


def test_target_needs_parity_everywhere_and_the_margin_from_160() -> None:
    ok = {40: {"served": 0.50, "logreg": 0.50}, 160: {"served": 0.80, "logreg": 0.75}}
    assert target_met(ok)
    assert not target_met({**ok, 40: {"served": 0.49, "logreg": 0.50}})
    assert not target_met({**ok, 160: {"served": 0.79, "logreg": 0.75}})
    assert target_met({80: {"served": 0.61, "logreg": 0.60}})  # no margin below 160
    assert not target_met({320: {"served": 0.61, "logreg": 0.60}})
    assert not target_met({})


def test_target_is_judged_on_the_named_arm() -> None:
    curve = {160: {"served": 0.80, "served_pretrained": 0.70, "logreg": 0.75}}
    assert target_met(curve)  # "served" by default
    assert not target_met(curve, arm="served_pretrained")
    assert not target_met({160: {"served": 0.80, "logreg": 0.75}}, arm="served_pretrained")


def test_target_arm_is_pretrained_when_the_tick_pretrains_on_that_pool() -> None:
    on = Settings(use_pretrained=True, pretrain_after_new_clips=1000)
    assert target_arm(on, pool_size=2500) == "served_pretrained"
    assert target_arm(on, pool_size=999) == "served"  # the tick has not started a run
    unused = on.model_copy(update={"use_pretrained": False})
    assert target_arm(unused, pool_size=2500) == "served"
    manual = on.model_copy(update={"pretrain_after_new_clips": 0})  # only on request
    assert target_arm(manual, pool_size=2500) == "served"


def test_summary_means_stds_and_the_served_kind() -> None:
    records = [
        {"budget": 40, "seed": s, "served_kind": "probe", "served": a, "probe": a, "logreg": 0.4}
        for s, a in ((0, 0.5), (1, 0.7))
    ]
    table = summarize(records, budgets=(40,))
    assert table[40]["served"] == pytest.approx(0.6)
    assert table[40]["served_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert table[40]["served_runs"] == [0.5, 0.7]
    assert table[40]["served_kind"] == "probe"
    assert table[40]["logreg_std"] == 0.0
    assert "centralnet" not in table[40]
    assert "served_pretrained" not in table[40]


def test_summary_has_the_pretrained_arm_where_it_ran() -> None:
    records = [
        {"budget": 40, "seed": 0, "served_kind": "probe", "served": 0.5, "logreg": 0.4},
        {"budget": 40, "seed": 1, "served_kind": "probe", "served": 0.6, "logreg": 0.4},
    ]
    records[0]["served_pretrained"] = 0.8  # one seed only: a partial run
    table = summarize(records, budgets=(40,))
    assert table[40]["served_pretrained"] == 0.8
    assert table[40]["served_pretrained_runs"] == [0.8]
    assert table[40]["served_pretrained_std"] == 0.0
    assert table[40]["served"] == pytest.approx(0.55)


def test_service_kind_follows_the_capacity_policy() -> None:
    settings = Settings(model_kind="centralnet")
    below = getattr(settings, "probe_below_labels", 200)
    assert service_kind(below, settings=settings) == "centralnet"
    assert service_kind(max(below - 1, 0), settings=settings) == (
        "probe" if below > 0 else "centralnet"
    )
    # With pretrained branches the switch is later: the probe still serves at ``below``.
    later = settings.probe_below_labels_pretrained
    assert later > below
    assert service_kind(below, settings=settings, pretrained=True) == "probe"
    assert service_kind(later, settings=settings, pretrained=True) == "centralnet"


def test_probe_switch_by_pretraining() -> None:
    from tagloop.errors import InvalidInput
    from tagloop.training.capacity import probe_below_for

    assert probe_below_for(pretrained=False, probe_below=500, probe_below_pretrained=1000) == 500
    assert probe_below_for(pretrained=True, probe_below=500, probe_below_pretrained=1000) == 1000
    assert probe_below_for(pretrained=True, probe_below=500, probe_below_pretrained=0) == 0
    with pytest.raises(InvalidInput):
        probe_below_for(pretrained=True, probe_below=500, probe_below_pretrained=-1)
