"""The comparison behind promotion: both versions on the same clips, with a paired bootstrap
interval of their score difference."""

from __future__ import annotations

import numpy as np

from tagloop.training.promotion import compare_versions
from tagloop.vocabulary import TagVocabulary

VOCAB = TagVocabulary.from_json([{"name": str(d), "group": "digit"} for d in range(3)])


def one_hot(labels: np.ndarray, k: int = 3) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


def probs_right_on(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Confident predictions, correct where ``right`` is True, wrong (next class) elsewhere."""
    guess = np.where(right, labels, (labels + 1) % 3)
    return one_hot(guess) * 0.9 + 0.1 / 3


def test_a_clearly_better_version_has_an_interval_above_zero() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    targets, known = one_hot(labels), np.ones((200, 3), dtype=bool)
    new = probs_right_on(labels, rng.random(200) < 0.9)
    old = probs_right_on(labels, rng.random(200) < 0.5)
    c = compare_versions(new, old, targets, known, vocab=VOCAB, on="holdout")
    assert c.on == "holdout" and c.n_clips == 200
    assert c.delta is not None and c.ci95 is not None
    assert abs(c.delta - (c.new_score - c.old_score)) < 1e-9  # type: ignore[operator]
    assert 0.25 < c.delta < 0.55 and 0 < c.ci95[0] < c.delta < c.ci95[1]
    assert "on 200 holdout clips" in c.describe()


def test_on_a_dozen_clips_the_interval_is_wide_and_spans_zero() -> None:
    labels = np.arange(12) % 3
    targets, known = one_hot(labels), np.ones((12, 3), dtype=bool)
    right_new = np.array([True] * 7 + [False] * 5)
    right_old = np.array([False] * 3 + [True] * 6 + [False] * 3)  # each right where the other errs
    c = compare_versions(
        probs_right_on(labels, right_new),
        probs_right_on(labels, right_old),
        targets,
        known,
        vocab=VOCAB,
        on="validation",
    )
    assert c.delta is not None and abs(c.delta - 1 / 12) < 1e-6
    assert c.ci95 is not None and c.ci95[0] < 0 < c.ci95[1]
    assert c.ci95[1] - c.ci95[0] > 0.1  # a coin toss, and the report says so
    # The same inputs give the same interval (a seeded bootstrap).
    again = compare_versions(
        probs_right_on(labels, right_new),
        probs_right_on(labels, right_old),
        targets,
        known,
        vocab=VOCAB,
        on="validation",
    )
    assert again == c


def test_nothing_promoted_yet_or_no_clips() -> None:
    labels = np.array([0, 1, 2])
    targets, known = one_hot(labels), np.ones((3, 3), dtype=bool)
    c = compare_versions(one_hot(labels), None, targets, known, vocab=VOCAB, on="validation")
    assert c.new_score == 1.0 and c.old_score is None and c.delta is None and c.ci95 is None
    empty = np.zeros((0, 3), dtype=np.float32)
    none = compare_versions(empty, empty, empty, empty.astype(bool), vocab=VOCAB, on="holdout")
    assert none.n_clips == 0 and none.delta is None
    assert none.to_dict()["ci95"] is None
