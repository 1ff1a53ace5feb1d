"""Cross-validation folds grouped by video, and temperature calibration (pure numpy / torch).

Clips of one video look alike (the same scene, the same voice), so a fold that trains on one
clip of a video and tests on its neighbour measures memory, not generalisation. Every fold here
holds whole videos. With a few dozen labels one 20% split is a handful of clips whose score is
noise; k folds score every labeled clip once, out of fold.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

# Fewer than this many distinct videos (or clips per fold) and a fold score means nothing.
MIN_GROUPS = 4
MIN_CLIPS_PER_FOLD = 4
# log-temperature grid for calibration: T from 0.25 to 16 (a probe at few labels is
# overconfident: T > 1 softens it; an over-regularised one can need T < 1).
_LOG_T_GRID = np.linspace(math.log(0.25), math.log(16.0), 49)


def grouped_folds(groups: np.ndarray, *, k: int, seed: int = 0) -> np.ndarray | None:
    """Fold index ``(N,)`` in ``[0, k')`` per clip, whole groups per fold, ``k' <= k``; None
    when there are too few groups or clips to make two folds.

    ``groups (N,)`` int: the video of each clip. Groups are dealt largest first to the fold
    with the fewest clips so far (ties broken by a seeded shuffle), so folds are balanced in
    clips, not just in videos. Deterministic for ``seed``.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be (N,), got {groups.shape}")
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_folds = min(k, len(unique), len(groups) // MIN_CLIPS_PER_FOLD)
    if n_folds < 2 or len(unique) < MIN_GROUPS:
        return None
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(unique))
    # Stable sort by size (descending) over a shuffled order: equal sizes in seeded order.
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    sizes = np.zeros(n_folds, dtype=np.int64)
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse]


def fit_temperature(
    logits: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[float, float, float]:
    """``(T, loss at T, loss at T=1)``: the temperature minimising ``loss_of(logits / T)`` over
    a log grid (a 1-D convex-ish problem; a grid is robust where Newton steps are not).
    ``logits (N, K)`` out-of-fold logits; ``loss_of`` maps logits to a scalar loss."""
    with torch.no_grad():
        losses = [float(loss_of(logits / math.exp(t))) for t in _LOG_T_GRID]
        at_one = float(loss_of(logits))
    best = int(np.argmin(losses))
    if not math.isfinite(losses[best]) or losses[best] >= at_one:
        return 1.0, at_one, at_one
    return float(math.exp(_LOG_T_GRID[best])), losses[best], at_one
