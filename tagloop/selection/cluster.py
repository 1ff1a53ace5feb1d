"""Batch rules built on k-means: cluster margin for uncertain batches, typicality for the seed.

- Cluster round robin (cluster margin, Citovsky et al. 2021): cluster the most uncertain
  candidates and take from each cluster in turn, smallest cluster first, most uncertain clip
  first. Uncertainty and diversity together: a dense confusing region cannot fill the batch,
  and a small distinct cluster is visited before a big one gets its second clip.
- Typicality (TypiClust, Hacohen et al. 2022): with no model yet, a tiny budget is best spent
  on typical examples, not on the outliers that farthest-first traversal favours. Cluster the
  pool into k clusters and take each cluster's densest point, largest clusters first.

Both take rows in priority order (ties go to the lowest row) and an optional per-group cap
(a few clips per video), and are deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from tagloop.selection.validate import check_positive_int

KMEANS_MAX_ITER = 25
# Centers are fitted on at most this many rows, then every row is assigned: the cost stays
# bounded on a seed round over tens of thousands of candidates.
KMEANS_FIT_ROWS = 10_000
TYPICAL_NEIGHBORS = 20  # K of the paper's K-nearest-neighbour density
# Typicality compares each point with at most this many points of its cluster, so a cluster of
# s points costs O(s * MAX_REFERENCE) distances, not O(s^2).
MAX_REFERENCE = 4096
_CHUNK = 1024


def _sq_dist(x: np.ndarray, c: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(M, D), (k, D) -> (M, k)``, clipped at 0."""
    c_sq = np.einsum("ij,ij->i", c, c)
    return np.maximum(x_sq[:, None] + c_sq[None, :] - 2.0 * (x @ c.T), 0.0)


def fit_kmeans(
    points: np.ndarray, *, k: int, seed: int = 0, max_iter: int = KMEANS_MAX_ITER
) -> np.ndarray:
    """Cluster codes ``(M,)`` int64 in ``[0, k)`` for ``points (M, D)``: k-means++ then Lloyd.

    At most ``max_iter`` Lloyd steps on at most the first ``KMEANS_FIT_ROWS`` rows (callers
    pass rows in a random or a priority order), then every row goes to its nearest center, so
    the cost is bounded. With fewer than k distinct points some clusters stay empty.
    Deterministic for a seed and a row order.
    """
    k = check_positive_int(k, name="k")
    m = points.shape[0]
    if m == 0:
        return np.empty(0, dtype=np.int64)
    fit = points[:KMEANS_FIT_ROWS]
    f = fit.shape[0]
    k = min(k, f)
    rng = np.random.default_rng(int(seed) % 2**63)  # a negative seed is a seed too
    x_sq = np.einsum("ij,ij->i", fit, fit)
    centers = np.empty((k, points.shape[1]))
    centers[0] = fit[int(rng.integers(f))]
    nearest = _sq_dist(fit, centers[:1], x_sq)[:, 0]
    for j in range(1, k):
        total = nearest.sum()
        # All points already sit on a center: duplicates, any pick is as good.
        row = int(rng.integers(f)) if total <= 0 else int(rng.choice(f, p=nearest / total))
        centers[j] = fit[row]
        np.minimum(nearest, _sq_dist(fit, centers[j : j + 1], x_sq)[:, 0], out=nearest)
    codes = np.full(f, -1, dtype=np.int64)
    for _ in range(max_iter):
        new = _nearest_center(fit, centers)
        if np.array_equal(new, codes):
            break
        codes = new
        order = np.argsort(codes, kind="stable")
        sizes = np.bincount(codes, minlength=k)
        full = np.flatnonzero(sizes)  # an empty cluster keeps its center
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[full]
        centers[full] = np.add.reduceat(fit[order], starts, axis=0) / sizes[full, None]
    return codes if f == m else _nearest_center(points, centers)


def _nearest_center(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``(M, D), (k, D) -> (M,)`` int64: the nearest center (|x|^2 is the same for all)."""
    c_sq = np.einsum("ij,ij->i", centers, centers)
    return np.argmin(c_sq[None, :] - 2.0 * (points @ centers.T), axis=1).astype(np.int64)


def _round_robin(
    queues: list[np.ndarray], *, k: int, groups: np.ndarray | None, per_group_cap: int | None
) -> np.ndarray:
    """Take the next open row of each queue in turn until k rows or every queue is spent."""
    counts = None if groups is None else np.zeros(int(groups.max()) + 1, dtype=np.int64)
    heads = [0] * len(queues)
    picks: list[int] = []
    progress = True
    while len(picks) < k and progress:
        progress = False
        for q, rows in enumerate(queues):
            while heads[q] < rows.size:
                row = int(rows[heads[q]])
                heads[q] += 1
                if counts is not None and groups is not None and per_group_cap is not None:
                    if counts[groups[row]] >= per_group_cap:
                        continue  # its video is full: try the cluster's next row
                    counts[groups[row]] += 1
                picks.append(row)
                progress = True
                break
            if len(picks) >= k:
                break
    return np.asarray(picks, dtype=np.int64)


def _clusters_in_order(
    points: np.ndarray, *, k: int, seed: int, largest_first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """k-means ``codes (M,)`` and the non-empty clusters ordered by size (smallest or largest
    first), ties to the cluster holding the lower row."""
    m = points.shape[0]
    codes = fit_kmeans(points, k=k, seed=seed)
    sizes = np.bincount(codes)
    first_row = np.full(sizes.size, m)
    np.minimum.at(first_row, codes, np.arange(m))
    used = np.flatnonzero(sizes)
    key = -sizes[used] if largest_first else sizes[used]
    return codes, used[np.lexsort((first_row[used], key))]


def pick_cluster_round_robin(
    points: np.ndarray,
    *,
    k: int,
    n_clusters: int,
    seed: int = 0,
    groups: np.ndarray | None = None,
    per_group_cap: int | None = None,
) -> np.ndarray:
    """Rows ``(<= k,)`` int64 of ``points (M, D)`` in pick order, by cluster round robin.

    Rows are in priority order (most uncertain first). They are clustered by k-means into
    ``n_clusters``; clusters are visited smallest first (ties: the one holding the better
    row), each giving its best row not yet taken, and round after round until k rows. So
    every cluster gives one row before any gives a second. With ``groups (M,)`` int codes, a
    group with ``per_group_cap`` picks is closed. Fewer than k rows only when all are used.
    """
    k = check_positive_int(k, name="k")
    n_clusters = check_positive_int(n_clusters, name="n_clusters")
    m = points.shape[0]
    if m == 0:
        return np.empty(0, dtype=np.int64)
    codes, order = _clusters_in_order(points, k=n_clusters, seed=seed, largest_first=False)
    queues = [np.flatnonzero(codes == c) for c in order]  # ascending row = priority order
    return _round_robin(queues, k=k, groups=groups, per_group_cap=per_group_cap)


def typicality(points: np.ndarray, *, n_neighbors: int = TYPICAL_NEIGHBORS) -> np.ndarray:
    """``(s, D) -> (s,)``: the inverse mean distance of each point to its nearest neighbours.

    Neighbours are sought among the first ``MAX_REFERENCE`` rows (the caller's rows come in a
    random order, so these are a random sample); a point is never its own neighbour. A single
    point is infinitely typical of itself.
    """
    s = points.shape[0]
    ref = points[:MAX_REFERENCE]
    r = ref.shape[0]
    nn = min(n_neighbors, r - 1)  # rows inside the reference lose themselves as neighbours
    if nn < 1:
        return np.full(s, np.inf)
    out = np.empty(s)
    for start in range(0, s, _CHUNK):
        chunk = points[start : start + _CHUNK]
        d2 = _sq_dist(chunk, ref, np.einsum("ij,ij->i", chunk, chunk))
        own = np.arange(start, start + chunk.shape[0])
        inside = own < r
        d2[np.flatnonzero(inside), own[inside]] = np.inf  # not its own neighbour
        near = np.partition(d2, nn - 1, axis=1)[:, :nn]
        out[start : start + chunk.shape[0]] = 1.0 / (np.sqrt(near).mean(axis=1) + 1e-12)
    return out


def pick_typical(
    points: np.ndarray,
    *,
    k: int,
    seed: int = 0,
    n_neighbors: int = TYPICAL_NEIGHBORS,
    groups: np.ndarray | None = None,
    per_group_cap: int | None = None,
) -> np.ndarray:
    """Rows ``(<= k,)`` int64 of ``points (M, D)`` in pick order: TypiClust's cold start.

    k-means into k clusters; the clusters are visited largest first (ties: the one holding
    the lower row), each giving its most typical open row (:func:`typicality`, computed
    within the cluster), round after round if the per-group cap or empty clusters leave the
    batch short. With ``groups (M,)`` int codes, a group with ``per_group_cap`` picks is closed.
    """
    k = check_positive_int(k, name="k")
    m = points.shape[0]
    if m == 0:
        return np.empty(0, dtype=np.int64)
    codes, order = _clusters_in_order(points, k=k, seed=seed, largest_first=True)
    queues = []
    for c in order:
        rows = np.flatnonzero(codes == c)
        typ = typicality(points[rows], n_neighbors=n_neighbors)
        queues.append(rows[np.lexsort((rows, -typ))])  # most typical first, ties: lower row
    return _round_robin(queues, k=k, groups=groups, per_group_cap=per_group_cap)
