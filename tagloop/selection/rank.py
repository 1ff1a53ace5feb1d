"""Rank scored clips and take the top k, in memory or streamed over a pool of any size.

The order is total: score descending, then clip id ascending, so equal scores never make a
selection depend on row order. Top-k uses ``argpartition`` (O(N)), not a full sort.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.selection.validate import check_ids, check_positive_int, check_scores


def rank_clips(*, clip_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row indices ``(N,)`` int64 ordering clips by score descending, then id ascending."""
    return np.lexsort((clip_ids, -scores)).astype(np.int64, copy=False)


def _top_k_indices(clip_ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best clips ``(min(k, N),)`` in rank order; inputs already checked."""
    n = scores.shape[0]
    if k >= n:
        return rank_clips(clip_ids=clip_ids, scores=scores)
    neg = -scores
    cut = neg[np.argpartition(neg, k - 1)[:k]].max()  # minus the k-th best score
    above = np.flatnonzero(neg < cut)
    tied = np.flatnonzero(neg == cut)
    need = k - above.size
    if tied.size > need:
        # Several clips share the k-th score: the smallest ids win.
        tied = tied[np.argsort(clip_ids[tied], kind="stable")[:need]]
    rows = np.concatenate([above, tied])
    return rows[rank_clips(clip_ids=clip_ids[rows], scores=scores[rows])]


def _reject_repeats(ids: np.ndarray, *, where: str) -> None:
    sorted_ids = np.sort(ids)
    dup = sorted_ids[1:] == sorted_ids[:-1]
    if dup.any():
        raise InvalidInput(
            f"clip id {int(sorted_ids[1:][dup][0])} appears twice {where}", code="invalid_ids"
        )


def select_top_k(
    *, clip_ids: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best clips as ``(ids (k,) int64, scores (k,) float64)`` in rank order.

    clip_ids: ``(N,)`` unique ints. scores: ``(N,)`` finite floats. Fewer than k clips: all.
    A repeated id is caught when both copies are among the k (checking all N would cost a sort).
    """
    k = check_positive_int(k, name="k")
    s = check_scores(scores)
    ids = check_ids(clip_ids, n=s.shape[0], unique=False)
    rows = _top_k_indices(ids, s, k)
    _reject_repeats(ids[rows], where="among the selected clips")
    return ids[rows], s[rows]


def top_k_streaming(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best clips of a pool given as chunks of ``(ids (n_i,), scores (n_i,))``.

    Returns ``(ids (k,) int64, scores (k,) float64)`` in rank order, the same as
    :func:`select_top_k` on the whole pool. Memory is O(k + largest chunk): each chunk is cut
    to its own top k (argpartition) and merged into the running top k, then dropped. Ids must
    be unique across chunks; a repeat is caught when both copies reach the running top k.
    """
    k = check_positive_int(k, name="k")
    best_ids = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float64)
    for i, (chunk_ids, chunk_scores) in enumerate(chunks):
        s = check_scores(chunk_scores, name=f"scores of chunk {i}")
        # Uniqueness is checked on the merged candidates below, which is O(k), not per chunk.
        ids = check_ids(chunk_ids, n=s.shape[0], name=f"ids of chunk {i}", unique=False)
        if s.size == 0:
            continue
        rows = _top_k_indices(ids, s, k)
        merged_ids = np.concatenate([best_ids, ids[rows]])
        merged_scores = np.concatenate([best_scores, s[rows]])
        _reject_repeats(merged_ids, where=f"in the pool (seen again in chunk {i})")
        keep = _top_k_indices(merged_ids, merged_scores, k)
        best_ids, best_scores = merged_ids[keep], merged_scores[keep]
    return best_ids, best_scores
