"""The decision threshold: where a probability should count as "yes" for pre-checked tags.

0.5 is not it. For micro-F1 over many tags the best single threshold on calibrated
probabilities is about half the F1 that can be reached (Lipton et al. 2014), and a model
trained on actively chosen labels is not calibrated to the pool anyway. So the threshold is
fitted on clips labeled at random (the holdout): the one threshold that maximises micro-F1
there. One number, not one per tag: per-tag best-F1 thresholds were measured and lower
micro-F1 (BENCHMARKS.md), since a hard tag's F1 is best when it is checked nearly everywhere.
Its own quality is measured by cross-fitting, so the holdout does not grade its own fit.

A group (exclusive tags, one softmax with an implicit "none": ``none_outcome``) is one
decision per clip: check its likeliest tag, or nothing. The likeliest tag is a candidate only
where it beats "none"; then it is checked where it reaches the group's cut. Its probabilities
live on another scale (with "none" they sum to one over the group), so groups get their own
cut, fitted the same way on those decisions (``fit_group_threshold``): without it a ten-way
softmax whose best guess sits at 0.4 would never be pre-checked at 0.5.
Pure numpy; the inputs are as in ``training.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagloop.none_outcome import none_probability

DEFAULT_THRESHOLD = 0.5
# No threshold is fitted on fewer positives, or on fewer clips: it would sit wherever those
# few happened to score. 30 clips is also when promotion starts trusting the holdout.
MIN_POSITIVES = 10
MIN_CLIPS = 30


def best_f1_threshold(
    scores: np.ndarray, labels: np.ndarray, *, n_positives: int | None = None
) -> tuple[float, float] | None:
    """(threshold, F1) maximising F1 of ``scores >= threshold`` against ``labels (N,)`` bool;
    None without a positive. The threshold lies halfway between the lowest score predicted
    positive and the next lower score (0 below the lowest), so it does not sit on one clip's
    score; ties go to the higher threshold (fewer tags checked). ``n_positives``: the
    positives F1 counts, when some can never be predicted (a group whose likeliest tag is
    wrong); ``labels.sum()`` by default."""
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum()) if n_positives is None else int(n_positives)
    if n_pos == 0 or not y.any():
        return None
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(y[order])[ends].astype(np.float64)
    predicted = (ends + 1).astype(np.float64)
    f1 = 2 * tp / (predicted + n_pos)
    best = int(np.argmax(f1))  # first maximum: the highest threshold among ties
    below = sorted_scores[ends[best] + 1] if ends[best] + 1 < s.size else 0.0
    return float((sorted_scores[ends[best]] + below) / 2), float(f1[best])


def _entries(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the known entries of ``columns``, flattened."""
    mask = np.asarray(known, dtype=bool)[:, columns]
    return probs[:, columns][mask], targets[:, columns][mask] >= 0.5


def fit_decision_threshold(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    columns: np.ndarray,
    min_positives: int = MIN_POSITIVES,
) -> float | None:
    """The threshold maximising micro-F1 over the known entries of ``columns`` of ``probs
    (N, K)``; None when they hold fewer than ``min_positives`` positives."""
    scores, labels = _entries(probs, targets, known, np.asarray(columns, dtype=np.int64))
    if int(labels.sum()) < min_positives:
        return None
    fitted = best_f1_threshold(scores, labels)
    return None if fitted is None else fitted[0]


def cross_fitted_micro_f1(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    columns: np.ndarray,
    folds: np.ndarray,
    min_positives: int = MIN_POSITIVES,
) -> float | None:
    """Micro-F1 when each row's decisions use the threshold fitted on the other folds' rows
    (``folds (N,)`` int; ``DEFAULT_THRESHOLD`` where those hold too few positives): what the
    fitted threshold is worth on clips it was not fitted on. None without a known entry."""
    cols = np.asarray(columns, dtype=np.int64)
    folds = np.asarray(folds)
    tp = fp = fn = 0
    for fold in np.unique(folds):
        held = folds == fold
        fitted = fit_decision_threshold(
            probs[~held], targets[~held], known[~held], columns=cols, min_positives=min_positives
        )
        t = DEFAULT_THRESHOLD if fitted is None else fitted
        scores, labels = _entries(probs[held], targets[held], known[held], cols)
        predicted = scores >= t
        tp += int((predicted & labels).sum())
        fp += int((predicted & ~labels).sum())
        fn += int((~predicted & labels).sum())
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else None


def group_decisions(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, *, groups: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int]:
    """The known (clip, group) pairs (all the group's columns known; with no positive the
    truth is "none") as candidate checks: (the likeliest tag's probability, whether that tag
    is right), one per pair whose likeliest tag beats "none" (the others never check a tag,
    whatever the cut), and the number of pairs with a positive tag (the F1 recall base: a
    positive whose group says none is missed)."""
    scores: list[np.ndarray] = []
    right: list[np.ndarray] = []
    n_positives = 0
    for columns in groups:
        cols = np.asarray(columns, dtype=np.int64)
        rows = np.asarray(known, dtype=bool)[:, cols].all(axis=1)
        p, y = probs[rows][:, cols], targets[rows][:, cols] >= 0.5
        best = p.argmax(axis=1)
        top = p[np.arange(len(p)), best]
        candidate = top > none_probability(p)
        scores.append(top[candidate])
        right.append(y[np.arange(len(y)), best][candidate])
        n_positives += int(y.any(axis=1).sum())
    if not scores:
        return np.empty(0), np.empty(0, dtype=bool), 0
    return np.concatenate(scores), np.concatenate(right), n_positives


def fit_group_threshold(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    groups: Sequence[np.ndarray],
    min_positives: int = MIN_POSITIVES,
) -> float | None:
    """The cut on a group's top probability maximising micro-F1 over the known group
    decisions (``groups``: each group's columns); None below ``min_positives`` positives."""
    scores, right, n_positives = group_decisions(probs, targets, known, groups=groups)
    if n_positives < min_positives:
        return None
    fitted = best_f1_threshold(scores, right, n_positives=n_positives)
    return None if fitted is None else fitted[0]


def group_micro_f1(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    groups: Sequence[np.ndarray],
    threshold: float,
) -> float | None:
    """Micro-F1 of checking each group's likeliest tag where it reaches ``threshold``; None
    without a known group decision."""
    scores, right, n_positives = group_decisions(probs, targets, known, groups=groups)
    checked = scores >= threshold
    denom = int(checked.sum()) + n_positives
    return 2 * int((checked & right).sum()) / denom if denom else None
