"""Every tag group has an implicit "none of these" outcome (pure numpy).

A label is complete unless said otherwise: a tag the annotator did not choose is a no, and a
group with no chosen tag is "none of these" (nobody speaks, no animal), unless the annotator
marked the group unsure. So a group of K tags is a K+1-way decision. The model keeps one logit
per tag and a fixed zero logit for "none" (``training.loss.probabilities``:
``softmax([z_1..z_K, 0])``), so no head changes shape; a group's K stored probabilities sum to
at most 1 and ``P(none)`` is the remainder. A prediction made before this rule sums to 1: its
``P(none)`` is 0, which is what it meant.

Shapes: ``group_probs (..., K)`` are one group's columns; the outcome index ``K`` is "none".
"""

from __future__ import annotations

import numpy as np

# The fixed logit of "none" (what training.loss appends to a group's logits).
NONE_LOGIT = 0.0


def none_probability(group_probs: np.ndarray) -> np.ndarray:
    """``(..., K) -> (...)``: ``P(none) = 1 - sum_k p_k``, clipped to [0, 1] (float rounding)."""
    p = np.asarray(group_probs, dtype=np.float64)
    return np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)


def with_none(group_probs: np.ndarray) -> np.ndarray:
    """``(..., K) -> (..., K + 1)``: the group's full distribution, "none" last."""
    p = np.asarray(group_probs, dtype=np.float64)
    return np.concatenate([p, none_probability(p)[..., None]], axis=-1)


def likeliest_outcome(group_probs: np.ndarray) -> np.ndarray:
    """``(..., K) -> (...)`` int64 in ``[0, K]``: the likeliest tag where it beats "none"
    (strictly: an undecided model, every outcome equal, says none), else ``K``."""
    p = np.asarray(group_probs, dtype=np.float64)
    k = p.shape[-1]
    if k == 0:
        return np.zeros(p.shape[:-1], dtype=np.int64)
    best = p.argmax(axis=-1)
    top = np.take_along_axis(p, best[..., None], axis=-1)[..., 0]
    return np.where(top > none_probability(p), best, k).astype(np.int64)


def group_decided(targets: np.ndarray, known: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: clips on which a person decided the group: a known positive among its
    columns, or every column known (then no positive means "none of these"). A group known
    only in part without a positive is undecided: "not tag x" does not say which it is."""
    cols = np.asarray(columns, dtype=np.int64)
    k = np.asarray(known, dtype=bool)[:, cols]
    labeled = np.where(k, np.asarray(targets, dtype=np.float64)[:, cols], 0.0)
    return (labeled.sum(axis=1) > 0) | k.all(axis=1)


def group_truth(targets: np.ndarray, known: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``(N,)`` int64: the decided outcome of the group on each clip, the index of its
    (largest) known positive in ``columns``, ``len(columns)`` for "none", -1 undecided."""
    cols = np.asarray(columns, dtype=np.int64)
    k = np.asarray(known, dtype=bool)[:, cols]
    labeled = np.where(k, np.asarray(targets, dtype=np.float64)[:, cols], 0.0)
    has_positive = labeled.sum(axis=1) > 0
    truth = np.where(has_positive, labeled.argmax(axis=1) if cols.size else 0, cols.size)
    return np.where(has_positive | k.all(axis=1), truth, -1).astype(np.int64)
