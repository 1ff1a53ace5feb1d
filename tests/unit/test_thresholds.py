"""The decision threshold (tagloop.training.thresholds) against brute force and hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from tagloop.training.metrics import f1_scores
from tagloop.training.thresholds import (
    DEFAULT_THRESHOLD,
    best_f1_threshold,
    cross_fitted_micro_f1,
    fit_decision_threshold,
    fit_group_threshold,
    group_decisions,
    group_micro_f1,
)


def f1_at(scores: np.ndarray, labels: np.ndarray, t: float) -> float:
    predicted = scores >= t
    tp = float((predicted & labels).sum())
    denom = float(predicted.sum() + labels.sum())
    return 2 * tp / denom if denom else 0.0


def test_best_threshold_matches_brute_force_over_every_cut() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        scores = np.round(rng.random(n), 1)  # rounded: many ties
        labels = rng.random(n) < 0.3
        got = best_f1_threshold(scores, labels)
        if not labels.any():
            assert got is None
            continue
        assert got is not None
        t, f1 = got
        brute = max(f1_at(scores, labels, c) for c in np.unique(scores))
        assert f1 == pytest.approx(brute)
        assert f1_at(scores, labels, t) == pytest.approx(f1)  # the threshold gives that F1


def test_threshold_sits_between_the_last_positive_and_the_next_score() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    labels = np.array([True, True, False, False])
    t, f1 = best_f1_threshold(scores, labels) or (None, None)
    assert f1 == 1.0
    assert t == pytest.approx(0.55)  # halfway between 0.8 and 0.3, not on a clip's score
    t_low, _ = best_f1_threshold(np.array([0.2, 0.1]), np.array([True, True])) or (0, 0)
    assert t_low == pytest.approx(0.05)  # every clip positive: halfway down to 0


def test_ties_go_to_the_higher_threshold() -> None:
    # Cutting at 0.9 (1 predicted, right; 1 positive missed) and at 0.1 (4 predicted, 2 right)
    # both give F1 2/3; the higher threshold checks fewer tags.
    scores = np.array([0.9, 0.5, 0.4, 0.1])
    labels = np.array([True, False, False, True])
    t, f1 = best_f1_threshold(scores, labels) or (None, None)
    assert f1 == pytest.approx(2 / 3)
    assert t == pytest.approx(0.7)


def test_the_fitted_threshold_maximises_micro_f1_over_known_entries_of_the_columns() -> None:
    rng = np.random.default_rng(1)
    n, k = 80, 4
    targets = (rng.random((n, k)) < 0.3).astype(np.float64)
    # Positives score higher but every score sits below 0.5: the default checks nothing.
    probs = np.clip(0.2 * targets + 0.25 * rng.random((n, k)), 0, 0.49)
    known = rng.random((n, k)) < 0.9
    columns = np.array([0, 2, 3])
    t = fit_decision_threshold(probs, targets, known, columns=columns)
    assert t is not None and t < DEFAULT_THRESHOLD
    at_default, _ = f1_scores(probs, targets, known, columns=columns)
    at_fitted, _ = f1_scores(probs, targets, known, columns=columns, threshold=t)
    assert at_default == 0.0
    # No other cut does better (brute force over every score of the known entries).
    scores = probs[:, columns][known[:, columns]]
    best = max(
        f1_scores(probs, targets, known, columns=columns, threshold=float(c))[0] or 0.0
        for c in np.unique(scores)
    )
    assert at_fitted == pytest.approx(best)
    # Column 1 is not measured: making it all positive with high scores changes nothing.
    probs[:, 1], targets[:, 1] = 0.99, 1.0
    assert fit_decision_threshold(probs, targets, known, columns=columns) == t


def test_too_few_positives_fit_nothing() -> None:
    probs = np.array([[0.9], [0.2], [0.1]])
    targets = np.array([[1.0], [0.0], [0.0]])
    known = np.ones((3, 1), dtype=bool)
    assert fit_decision_threshold(probs, targets, known, columns=np.array([0])) is None
    t = fit_decision_threshold(probs, targets, known, columns=np.array([0]), min_positives=1)
    assert t == pytest.approx(0.55)


def test_cross_fitting_grades_each_fold_with_the_other_folds_threshold() -> None:
    # Fold 0's positives score about 0.3 and fold 1's about 0.6; negatives score 0.1 in
    # fold 0 and 0.45 in fold 1. Fitted on all rows, one cut separates everything only if it
    # lies in (0.1, 0.3) and (0.45, 0.6) at once, which is impossible.
    probs = np.array([[0.3], [0.31], [0.1], [0.6], [0.61], [0.45]])
    targets = np.array([[1.0], [1.0], [0.0], [1.0], [1.0], [0.0]])
    known = np.ones((6, 1), dtype=bool)
    folds = np.array([0, 0, 0, 1, 1, 1])
    got = cross_fitted_micro_f1(
        probs, targets, known, columns=np.array([0]), folds=folds, min_positives=1
    )
    # Fold 0 graded at fold 1's cut (0.525): both positives missed. Fold 1 graded at fold 0's
    # cut (0.2): both positives and the negative checked. tp 2, fp 1, fn 2: F1 4/7.
    assert got == pytest.approx(4 / 7)
    # With too few positives to fit, each fold is graded at the default 0.5.
    at_default = cross_fitted_micro_f1(
        probs, targets, known, columns=np.array([0]), folds=folds, min_positives=5
    )
    assert at_default == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))


def test_a_group_is_one_decision_per_clip_on_its_likeliest_tag() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.45, 0.35], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0]])
    targets = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=np.float64)
    known = np.ones_like(targets, dtype=bool)
    known[3, 2] = False  # a group half decided on a clip is not a decision there
    scores, right, n_positives = group_decisions(
        probs, targets, known, groups=[np.array([0, 1, 2])]
    )
    np.testing.assert_allclose(scores, [0.6, 0.45, 0.4])
    assert right.tolist() == [True, False, False]
    assert n_positives == 2  # clip 2's group does not apply: no positive to find


def test_group_threshold_maximises_micro_f1_of_checking_the_likeliest_tag() -> None:
    rng = np.random.default_rng(2)
    n, c = 120, 10
    truth = rng.integers(0, c, n)
    applies = rng.random(n) < 0.8  # on a fifth of the clips the group has no tag
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # top guesses < 0.5
    targets = np.eye(c)[truth] * applies[:, None]
    known = np.ones((n, c), dtype=bool)
    t = fit_group_threshold(probs, targets, known, groups=[np.arange(c)])
    assert t is not None and t < DEFAULT_THRESHOLD

    def micro_f1(cut: float) -> float:
        top = probs.argmax(axis=1)
        checked = probs.max(axis=1) >= cut
        tp = int((checked & (targets[np.arange(n), top] > 0)).sum())
        return 2 * tp / (int(checked.sum()) + int(applies.sum()))

    brute = max(micro_f1(float(x)) for x in np.unique(probs.max(axis=1)))
    assert micro_f1(t) == pytest.approx(brute)
    assert micro_f1(t) > micro_f1(DEFAULT_THRESHOLD)
    for cut in (t, DEFAULT_THRESHOLD, 0.0, 1.1):
        got = group_micro_f1(probs, targets, known, groups=[np.arange(c)], threshold=cut)
        assert got == pytest.approx(micro_f1(cut))


def test_no_group_threshold_without_groups_or_enough_positives() -> None:
    probs = np.full((40, 3), 1 / 3)
    targets = np.zeros((40, 3))
    targets[:5, 0] = 1  # 5 positives, below MIN_POSITIVES
    known = np.ones((40, 3), dtype=bool)
    assert fit_group_threshold(probs, targets, known, groups=[np.arange(3)]) is None
    assert fit_group_threshold(probs, targets, known, groups=[]) is None
