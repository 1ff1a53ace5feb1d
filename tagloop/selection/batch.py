"""Assemble a labeling batch: uncertain, diverse, a few clips per video at most.

Uncertainty alone picks near-duplicates (neighbouring clips of one video, or one confusing
scene), so the batch is built in two steps: take the top-M most uncertain clips, then run
k-center greedy (farthest-first traversal, Sener & Savarese 2018) on their embeddings, never
taking more than ``per_video_cap`` clips of one video. A strategy may ask for cluster round
robin instead (``Strategy.batch``, see ``selection.cluster``). Before any model exists, the seed
round runs the same traversal, or picks typical points (``rule="typical"``), on cheap clip
descriptors over a random sample of the pool.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.selection.cluster import pick_cluster_round_robin, pick_typical
from tagloop.selection.rank import rank_clips
from tagloop.selection.registry import BATCH_RULES, BatchRule
from tagloop.selection.strategy import hash_uniform
from tagloop.selection.validate import (
    check_ids,
    check_matrix_rows,
    check_positive_int,
    check_scores,
    encode_groups,
)

# With embeddings and no top_m, k-center runs over this many candidates per batch slot.
DEFAULT_TOP_M_FACTOR = 10
DEFAULT_SEED_CANDIDATES = 50_000
# The seed round's rule: farthest-first (k-center) or TypiClust's typical points.
SeedRule = Literal["k_center", "typical"]
SEED_RULES: tuple[str, ...] = ("k_center", "typical")
# k-means seed of the cluster rules: a batch depends on the pool, not on a draw.
CLUSTER_SEED = 0


def _check_rule(rule: object, *, name: str, known: tuple[str, ...]) -> None:
    if rule not in known:
        raise InvalidInput(
            f"{name} must be one of {', '.join(known)}, got {rule!r}", code="invalid_argument"
        )


def pick_k_center(
    points: np.ndarray,
    *,
    k: int,
    first: int = 0,
    groups: np.ndarray | None = None,
    per_group_cap: int | None = None,
) -> np.ndarray:
    """k-center greedy over ``points (M, D)``: row indices ``(<= k,)`` int64 in pick order.

    Starts at row ``first``; each next pick is the row farthest (Euclidean) from all picks so
    far. With ``groups (M,)`` int codes, a group is closed once it has ``per_group_cap`` picks.
    Ties go to the lowest row index, so callers order rows by priority. Fewer than k rows are
    returned only when every row is picked or closed.
    """
    m = points.shape[0]
    if m == 0 or k < 1:
        return np.empty(0, dtype=np.int64)
    sq_norms = np.einsum("ij,ij->i", points, points)
    nearest = np.full(m, np.inf)  # squared distance from each row to its nearest pick
    open_rows = np.ones(m, dtype=bool)
    counts = None if groups is None else np.zeros(int(groups.max()) + 1, dtype=np.int64)
    picks: list[int] = []
    row = first
    while True:
        picks.append(row)
        open_rows[row] = False
        if groups is not None and counts is not None and per_group_cap is not None:
            g = groups[row]
            counts[g] += 1
            if counts[g] >= per_group_cap:
                open_rows[groups == g] = False
        if len(picks) >= k or not open_rows.any():
            break
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix-vector product, no (M, D) temporary.
        dist = np.maximum(sq_norms + sq_norms[row] - 2.0 * (points @ points[row]), 0.0)
        np.minimum(nearest, dist, out=nearest)
        row = int(np.argmax(np.where(open_rows, nearest, -np.inf)))
    return np.asarray(picks, dtype=np.int64)


def _fill_by_rank(
    order: np.ndarray, *, chosen: np.ndarray, groups: np.ndarray, cap: int, need: int
) -> np.ndarray:
    """The first ``need`` rows of ``order (N,)`` not in ``chosen`` that keep every group <= cap."""
    taken = np.zeros(groups.shape[0], dtype=bool)
    taken[chosen] = True
    rest = order[~taken[order]]
    used = np.bincount(groups[chosen], minlength=int(groups.max()) + 1)
    rest_codes = groups[rest]
    # Occurrence number of each row within its group, in rank order (vectorised).
    by_group = np.argsort(rest_codes, kind="stable")
    sorted_codes = rest_codes[by_group]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    occurrence = np.empty(rest.size, dtype=np.int64)
    occurrence[by_group] = np.arange(rest.size) - starts
    fits = occurrence < cap - used[rest_codes]
    return rest[fits][:need]


def _check_common(
    clip_ids: np.ndarray, video_ids: np.ndarray, batch_size: int, per_video_cap: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    ids = check_ids(clip_ids)
    videos = encode_groups(video_ids, n=ids.shape[0])
    return (
        ids,
        videos,
        check_positive_int(batch_size, name="batch_size"),
        check_positive_int(per_video_cap, name="per_video_cap"),
    )


def assemble_batch(
    *,
    clip_ids: np.ndarray,
    scores: np.ndarray,
    video_ids: np.ndarray,
    batch_size: int,
    per_video_cap: int,
    embeddings: np.ndarray | None = None,
    top_m: int | None = None,
    costs: np.ndarray | None = None,
    cost_gamma: float = 0.0,
    batch_rule: BatchRule = "k_center",
) -> np.ndarray:
    """Clip ids ``(<= batch_size,)`` int64 to label next, in rank order (most uncertain first).

    clip_ids: ``(N,)`` unique ints. scores: ``(N,)`` from ``score_pool``. video_ids: ``(N,)``
    the video each clip comes from. embeddings: ``(N, D)`` fused clip embeddings; without them
    the batch is the top of the ranking under the per-video cap. top_m: how many top clips
    k-center chooses among (default ``10 * batch_size``). costs: ``(N,)`` > 0 labeling costs,
    e.g. clip seconds; the ranking uses ``score / cost ** cost_gamma``. batch_rule: the
    strategy's ``Strategy.batch``: ``"k_center"``, ``"cluster_round_robin"`` (k-means of the
    top_m candidates into batch_size clusters, most uncertain clip of each, smallest first) or
    ``"rank"`` (the top of the ranking: embeddings are not used).

    If k-center runs out of candidates (the cap closes their videos), the batch is filled from
    the rest of the ranking under the same cap. Fewer than batch_size ids come back only when
    the pool cannot fill the batch under the cap. For a pool of millions, cut it first with
    ``top_k_streaming`` to a few thousand candidates.
    """
    ids, videos, batch_size, cap = _check_common(clip_ids, video_ids, batch_size, per_video_cap)
    _check_rule(batch_rule, name="batch_rule", known=BATCH_RULES)
    n = ids.shape[0]
    priority = check_scores(scores, n=n)
    if costs is not None and cost_gamma != 0.0:
        cost = check_scores(costs, n=n, name="costs")
        if (cost <= 0).any():
            raise InvalidInput("costs must be > 0", code="invalid_scores")
        if not np.isfinite(cost_gamma):
            raise InvalidInput("cost_gamma must be finite", code="invalid_argument")
        priority = priority / cost**cost_gamma
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = rank_clips(clip_ids=ids, scores=priority)

    chosen = np.empty(0, dtype=np.int64)
    if embeddings is not None and batch_rule != "rank":
        m = DEFAULT_TOP_M_FACTOR * batch_size if top_m is None else top_m
        m = min(check_positive_int(m, name="top_m"), n)
        candidates = order[:m]  # rank order, so k-center ties go to the more uncertain clip
        emb = check_matrix_rows(embeddings, n=n, rows=candidates, name="embeddings")
        if batch_rule == "cluster_round_robin":
            picks = pick_cluster_round_robin(
                emb,
                k=batch_size,
                n_clusters=min(batch_size, m),
                seed=CLUSTER_SEED,
                groups=videos[candidates],
                per_group_cap=cap,
            )
        else:
            picks = pick_k_center(emb, k=batch_size, groups=videos[candidates], per_group_cap=cap)
        chosen = candidates[picks]
    if chosen.size < batch_size:
        extra = _fill_by_rank(
            order, chosen=chosen, groups=videos, cap=cap, need=batch_size - chosen.size
        )
        chosen = np.concatenate([chosen, extra])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    return ids[chosen[np.argsort(position[chosen])]]


def seed_batch(
    *,
    clip_ids: np.ndarray,
    descriptors: np.ndarray,
    video_ids: np.ndarray,
    batch_size: int,
    per_video_cap: int,
    seed: int,
    max_candidates: int = DEFAULT_SEED_CANDIDATES,
    rule: SeedRule = "k_center",
) -> np.ndarray:
    """The first batch, before any model: clip ids ``(<= batch_size,)`` int64 in pick order.

    descriptors: ``(N, D)`` cheap clip descriptors (colour, motion, loudness), standardised per
    column here so no one unit of measure dominates the distances. k-center greedy spreads the
    batch over descriptor space instead of sampling the crowded regions. It runs over
    ``max_candidates`` clips drawn by a hash of (seed, clip id), starting from the first of
    them: the result depends on the seed and the set of clips, not on their row order.
    rule ``"typical"`` instead takes the most typical clip of each of batch_size k-means
    clusters, largest first (TypiClust): at a tiny budget, typical beats spread-out outliers.
    """
    ids, videos, batch_size, cap = _check_common(clip_ids, video_ids, batch_size, per_video_cap)
    _check_rule(rule, name="seed rule", known=SEED_RULES)
    n = ids.shape[0]
    max_candidates = check_positive_int(max_candidates, name="max_candidates")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidInput(f"seed must be an integer, got {seed!r}", code="invalid_argument")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((ids, hash_uniform(ids, seed=seed)))
    candidates = order[:max_candidates]
    x = check_matrix_rows(descriptors, n=n, rows=candidates, name="descriptors")
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    if rule == "typical":
        picks = pick_typical(
            x, k=batch_size, seed=seed, groups=videos[candidates], per_group_cap=cap
        )
    else:
        picks = pick_k_center(x, k=batch_size, groups=videos[candidates], per_group_cap=cap)
    chosen = candidates[picks]
    if chosen.size < batch_size:
        extra = _fill_by_rank(
            order, chosen=chosen, groups=videos, cap=cap, need=batch_size - chosen.size
        )
        chosen = np.concatenate([chosen, extra])
    return ids[chosen]
