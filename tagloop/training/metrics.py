"""Evaluation metrics over a tag vocabulary, pure numpy.

Inputs are ``probs (N, K)`` (from ``training.loss.probabilities``), ``targets (N, K)`` multi-hot
(soft targets allowed) and ``known (N, K)`` bool, the entries a person decided. Grouped tags are
scored as single-label tasks (accuracy per group); ungrouped tags as multi-label ones (mAP,
micro/macro-F1, GAP@k); macro-AP is over every tag, grouped ones one-vs-rest. A group counts
on a clip where it is decided, as in the loss (``none_outcome.group_decided``: a known
positive, or every column known, which without a positive means "none of these"); then every
tag of that group is known for that clip. A group's outcomes are its tags and "none"
(``P(none)`` is what its columns leave of 1). Undefined values (no data) are None, so the
result is plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.none_outcome import group_decided, group_truth, likeliest_outcome, with_none
from tagloop.vocabulary import TagVocabulary


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AP of ``scores (N,)`` against binary ``labels (N,)``; None without a positive.

    Same definition as sklearn's ``average_precision_score``: sum over distinct thresholds of
    (recall step) x precision, with tied scores entering together.
    """
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = labels[order].astype(np.float64)
    # Last index of each run of equal scores: the thresholds.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(hits)[ends]
    precision = tp / (ends + 1)
    recall_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(recall_step * precision))


def effective_known(targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary) -> np.ndarray:
    """``(N, K)`` bool: ungrouped entries as given; a group's entries all True on clips where
    the group is decided (``none_outcome.group_decided``), all False elsewhere."""
    out = np.asarray(known, dtype=bool).copy()
    for columns in vocab.group_indices.values():
        out[:, columns] = group_decided(targets, known, columns)[:, None]
    return out


def _per_group(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    vocab: TagVocabulary,
    measure: Callable[[np.ndarray, np.ndarray], float],
) -> dict[str, float | None]:
    """Group -> ``measure(group probs (n, K), decided outcomes (n,))`` over the clips where the
    group is decided (None: no decided clip)."""
    out: dict[str, float | None] = {}
    for group, columns in vocab.group_indices.items():
        truth = group_truth(targets, known, columns)
        rows = truth >= 0
        out[group] = measure(probs[rows][:, columns], truth[rows]) if rows.any() else None
    return out


def group_accuracy(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary
) -> dict[str, float | None]:
    """Group -> accuracy of the likeliest outcome, a tag or "none" (None: no decided clip). A
    clip whose truth is "none" is right when the model's likeliest outcome is none."""

    def accuracy(group_probs: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean(likeliest_outcome(group_probs) == truth))

    return _per_group(probs, targets, known, vocab=vocab, measure=accuracy)


def group_nll(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary
) -> dict[str, float | None]:
    """Group -> mean negative log-likelihood (nats) of the decided outcome, a tag or "none",
    under the group's full distribution (``with_none``); None: no decided clip. How much the
    model's confidence can be trusted: a model that is sure and wrong scores far above
    ``log(K + 1)``, the NLL of saying nothing. Probabilities are floored at ``1e-7``."""

    def nll(group_probs: np.ndarray, truth: np.ndarray) -> float:
        picked = np.take_along_axis(with_none(group_probs), truth[:, None], axis=1)[:, 0]
        return float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0))))

    return _per_group(probs, targets, known, vocab=vocab, measure=nll)


def f1_scores(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    columns: np.ndarray,
    threshold: float = 0.5,
) -> tuple[float | None, float | None]:
    """(micro-F1, macro-F1) of ``probs >= threshold`` over the known entries of ``columns``.

    Macro averages the tags whose F1 is defined (some known positive or predicted positive).
    """
    mask = known[:, columns]
    predicted = (probs[:, columns] >= threshold) & mask
    actual = (targets[:, columns] >= 0.5) & mask
    tp = (predicted & actual).sum(axis=0).astype(np.float64)
    fp = (predicted & ~actual).sum(axis=0).astype(np.float64)
    fn = (~predicted & actual).sum(axis=0).astype(np.float64)
    denom = 2 * tp + fp + fn
    micro = float(2 * tp.sum() / denom.sum()) if denom.sum() > 0 else None
    defined = denom > 0
    macro = float(np.mean(2 * tp[defined] / denom[defined])) if defined.any() else None
    return micro, macro


def global_average_precision(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    columns: np.ndarray,
    top_k: int = 20,
) -> float | None:
    """YouTube-8M GAP@k over ``columns``: pool every clip's top-k (known) predictions, rank
    them all by score and compute AP with the total number of known positives as recall base."""
    scores: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    n_pos = 0
    for row in range(probs.shape[0]):
        cols = columns[known[row, columns]]
        if cols.size == 0:
            continue
        row_scores = probs[row, cols]
        row_hits = targets[row, cols] >= 0.5
        n_pos += int(row_hits.sum())
        top = np.argsort(-row_scores, kind="stable")[:top_k]
        scores.append(row_scores[top])
        hits.append(row_hits[top])
    if n_pos == 0:
        return None
    all_scores = np.concatenate(scores)
    all_hits = np.concatenate(hits)[np.argsort(-all_scores, kind="stable")]
    precision_at = np.cumsum(all_hits) / np.arange(1, all_hits.size + 1)
    return float(np.sum(precision_at * all_hits) / n_pos)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 15
) -> float | None:
    """ECE: sum over equal-width bins ``(lo, hi]`` of ``|accuracy - mean confidence|`` weighted by
    the bin's share of decisions; ``confidence (M,)`` in [0, 1], ``correct (M,)`` bool."""
    if confidence.size == 0:
        return None
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        gap = abs(float(np.mean(correct[in_bin])) - float(np.mean(confidence[in_bin])))
        total += gap * float(in_bin.mean())
    return total


def decision_confidence(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """Every labeled decision as (confidence, correct): a group's top outcome probability on a
    clip ("none" included), and ``max(p, 1 - p)`` for a known ungrouped entry; both ``(M,)``."""
    confidences: list[np.ndarray] = []
    correct: list[np.ndarray] = []
    for columns in vocab.group_indices.values():
        truth = group_truth(targets, known, columns)
        rows = truth >= 0
        group_probs = probs[rows][:, columns]
        confidences.append(with_none(group_probs).max(axis=1))
        correct.append(likeliest_outcome(group_probs) == truth[rows])
    columns = vocab.ungrouped_indices
    mask = known[:, columns]
    p = probs[:, columns][mask]
    y = targets[:, columns][mask] >= 0.5
    confidences.append(np.maximum(p, 1.0 - p))
    correct.append((p >= 0.5) == y)
    return np.concatenate(confidences), np.concatenate(correct)


def positives_per_tag(
    targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary
) -> dict[str, int]:
    """Tag -> how many clips have it as a known positive (``target >= 0.5``); every tag of
    ``vocab`` appears, 0 when never seen. ``targets``/``known`` are ``(N, K)``."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, len(vocab))
    known = np.asarray(known, dtype=bool).reshape(-1, len(vocab))
    counts = ((targets >= 0.5) & known).sum(axis=0)
    return {tag: int(n) for tag, n in zip(vocab.tags, counts, strict=True)}


def rare_tags(counts: Mapping[str, int], *, fraction: float = 0.2) -> list[str]:
    """The rarest ``ceil(fraction * len(counts))`` tags of ``counts`` (tag -> positives in a
    reference sample), rarest first, ties by name so the choice is stable.

    The caller picks the reference: the stats use the holdout's labeled positives when the
    holdout has labels (a random sample, so an unbiased prevalence), else the positives the
    newest round trained on.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInput("fraction must be in (0, 1]", code="bad_option")
    n = math.ceil(fraction * len(counts))
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:n]]


def check_arrays(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, *, vocab: TagVocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As float64/float64/bool arrays; InvalidInput unless all are ``(N, len(vocab))``."""
    arrays = (
        np.asarray(probs, dtype=np.float64),
        np.asarray(targets, dtype=np.float64),
        np.asarray(known, dtype=bool),
    )
    shape = arrays[0].shape
    if len(shape) != 2 or shape[1] != len(vocab) or any(a.shape != shape for a in arrays):
        raise InvalidInput(
            f"probs, targets and known must all be (N, {len(vocab)}); got "
            f"{[a.shape for a in arrays]}",
            code="bad_metric_input",
        )
    return arrays


def evaluate_predictions(
    probs: np.ndarray,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    vocab: TagVocabulary,
    threshold: float = 0.5,
    top_k: int = 20,
    n_bins: int = 15,
) -> dict[str, Any]:
    """All metrics as a JSON-ready dict.

    Keys: ``n_clips``; ``accuracy`` (group -> value) and ``mean_accuracy``; over ungrouped
    tags ``map``, ``micro_f1``, ``macro_f1``, ``gap`` (GAP@``gap_top_k``); ``ap_per_tag`` (every
    tag, grouped ones one-vs-rest on clips where their group is labeled) and ``macro_ap``, its
    mean over the tags with a defined AP (``map`` stays the ungrouped-only mean for older
    readers); ``positives`` (tag -> known positives); ``ece`` over every labeled decision;
    ``nll`` (group -> mean negative log-likelihood of the decided outcome) and ``mean_nll``.
    Values are floats, or None where there is nothing to measure.
    """
    probs, targets, known = check_arrays(probs, targets, known, vocab=vocab)
    accuracy = group_accuracy(probs, targets, known, vocab=vocab)
    measured = [v for v in accuracy.values() if v is not None]
    scored = effective_known(targets, known, vocab=vocab)
    ap_per_tag: dict[str, float | None] = {}
    for j, tag in enumerate(vocab.tags):
        rows = scored[:, j]
        ap_per_tag[tag] = average_precision(probs[rows, j], targets[rows, j] >= 0.5)
    ungrouped = vocab.ungrouped_indices
    ungrouped_ap = [ap_per_tag[vocab.tags[j]] for j in ungrouped]
    defined_ap = [ap for ap in ungrouped_ap if ap is not None]
    every_ap = [ap for ap in ap_per_tag.values() if ap is not None]
    micro, macro = f1_scores(probs, targets, known, columns=ungrouped, threshold=threshold)
    confidence, correct = decision_confidence(probs, targets, known, vocab=vocab)
    nll = group_nll(probs, targets, known, vocab=vocab)
    defined_nll = [v for v in nll.values() if v is not None]
    return {
        "n_clips": int(probs.shape[0]),
        "accuracy": accuracy,
        "mean_accuracy": float(np.mean(measured)) if measured else None,
        "map": float(np.mean(defined_ap)) if defined_ap else None,
        "map_tags": len(defined_ap),
        "micro_f1": micro,
        "macro_f1": macro,
        "gap": global_average_precision(probs, targets, known, columns=ungrouped, top_k=top_k),
        "gap_top_k": top_k,
        "ap_per_tag": ap_per_tag,
        "macro_ap": float(np.mean(every_ap)) if every_ap else None,
        "positives": positives_per_tag(targets, known, vocab=vocab),
        "ece": expected_calibration_error(confidence, correct, n_bins=n_bins),
        "nll": nll,
        "mean_nll": float(np.mean(defined_nll)) if defined_nll else None,
    }
