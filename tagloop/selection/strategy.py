"""Uncertainty strategies as pure array functions: probabilities in, scores out.

Every score lies in [0, 1] and higher means more worth labeling. The categorical functions work
on the last axis ``C`` of any array ``(..., C)``, so one call scores a whole block of units.
Scores are divided by the largest value the unit can reach, so that a 10-way group and a yes/no
tag weigh the same when a clip's units are combined (a uniform distribution scores 1, a one-hot
distribution 0). Importing this module registers the strategies by name.
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.selection.registry import Strategy, UnitInputs, add_strategy, register_strategy

_U64 = np.uint64


def _entropy_nats(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis: ``(..., C) -> (...)``; 0 log 0 = 0."""
    safe = np.where(probs > 0, probs, 1.0)
    return -(probs * np.log(safe)).sum(axis=-1)


def to_bernoulli(probs: np.ndarray) -> np.ndarray:
    """Independent tag probabilities ``(..., L)`` as Bernoulli units ``(..., L, 2)``."""
    return np.stack([1.0 - probs, probs], axis=-1)


def score_least_confidence(probs: np.ndarray) -> np.ndarray:
    """``(..., C) -> (...)``: ``(1 - max_c p_c) * C / (C - 1)``."""
    c = probs.shape[-1]
    if c < 2:
        return np.zeros(probs.shape[:-1])
    return np.clip((1.0 - probs.max(axis=-1)) * c / (c - 1), 0.0, 1.0)


def score_margin(probs: np.ndarray) -> np.ndarray:
    """``(..., C) -> (...)``: ``1 - (p_top1 - p_top2)``; for a tag, ``1 - |2p - 1|``."""
    c = probs.shape[-1]
    if c < 2:
        return np.zeros(probs.shape[:-1])
    top2 = np.partition(probs, c - 2, axis=-1)[..., c - 2 :]
    return np.clip(1.0 - (top2[..., 1] - top2[..., 0]), 0.0, 1.0)


def score_entropy(probs: np.ndarray) -> np.ndarray:
    """``(..., C) -> (...)``: Shannon entropy divided by ``log C``."""
    c = probs.shape[-1]
    if c < 2:
        return np.zeros(probs.shape[:-1])
    return np.clip(_entropy_nats(probs) / np.log(c), 0.0, 1.0)


def score_binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Independent tags ``(..., L) -> (..., L)``: each tag's binary entropy in bits."""
    return score_entropy(to_bernoulli(probs))


def score_mean_binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Independent tags ``(N, L) -> (N,)``: the mean over tags of the binary entropy in bits."""
    return score_binary_entropy(probs).mean(axis=-1)


def score_min_margin(probs: np.ndarray) -> np.ndarray:
    """Independent tags ``(N, L) -> (N,)``: ``1 - min_l |2 p_l - 1|``.

    The tag nearest its decision threshold decides: the clip scores as its least sure tag.
    """
    return 1.0 - np.abs(2.0 * probs - 1.0).min(axis=-1)


def score_mutual_information(stack: np.ndarray) -> np.ndarray:
    """``(S, ..., C) -> (...)``: ``H(mean_s p_s) - mean_s H(p_s)`` over S distributions.

    Divided by its bound ``log min(S, C)``. Zero exactly when all S distributions agree.
    """
    s, c = stack.shape[0], stack.shape[-1]
    if s < 2 or c < 2:
        return np.zeros(stack.shape[1:-1])
    mi = _entropy_nats(stack.mean(axis=0)) - _entropy_nats(stack).mean(axis=0)
    # Rounding can make a true zero slightly negative.
    return np.clip(mi / np.log(min(s, c)), 0.0, 1.0)


def score_bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD from P MC-dropout passes ``(P, ..., C) -> (...)``.

    The mutual information between the prediction and the model's weights (Houlsby et al.
    2011): high when the passes are each confident but disagree with one another.
    """
    return score_mutual_information(mc_probs)


def score_disagreement(modality_probs: np.ndarray) -> np.ndarray:
    """Disagreement of M single-modality heads ``(M, ..., C) -> (...)``.

    The generalised Jensen-Shannon divergence of the heads (for two heads, the JS divergence
    divided by log 2): 0 when visual and audio agree, 1 when they are sure of different tags.
    """
    return score_mutual_information(modality_probs)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64: a cheap, well-mixed integer hash."""
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def hash_uniform(ids: np.ndarray, *, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per id ``(N,) -> (N,)`` that depends only on (seed, id).

    Unlike draws from a generator, it does not depend on row order or on how a pool is chunked.
    """
    salt = _splitmix64(np.asarray([seed % 2**64], dtype=np.uint64))
    z = _splitmix64(_splitmix64(ids.astype(np.int64).view(np.uint64)) ^ salt)
    return (z >> _U64(11)).astype(np.float64) * 2.0**-53


def score_random(
    n: int,
    *,
    clip_ids: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``(N,)`` uniform scores: random sampling, the baseline every strategy must beat.

    With ``clip_ids`` a clip's score is a hash of (seed, id), so it is the same whatever the row
    order or chunking; an int ``rng`` is the seed, a Generator draws one.
    """
    if clip_ids is not None:
        if isinstance(rng, int | np.integer):
            seed = int(rng)
        else:
            seed = int(np.random.default_rng(rng).integers(0, 2**63))
        return hash_uniform(np.asarray(clip_ids), seed=seed)
    return np.random.default_rng(rng).random(n)


# Registered unit scorers. "random" has none: score_pool calls score_random instead.

add_strategy(
    Strategy(
        name="random",
        score_unit=None,
        description="Uniform random scores: the baseline every strategy must beat.",
        # A diversity step would favour outliers and bias the reference sample.
        batch="rank",
    )
)


@register_strategy("least_confidence")
def _least_confidence(units: UnitInputs) -> np.ndarray:
    """One minus the top probability (scaled so a uniform unit scores 1)."""
    return score_least_confidence(units.probs)


@register_strategy("margin")
def _margin(units: UnitInputs) -> np.ndarray:
    """One minus the gap between the two most likely outcomes."""
    return score_margin(units.probs)


@register_strategy("cluster_margin", batch="cluster_round_robin")
def _cluster_margin(units: UnitInputs) -> np.ndarray:
    """Margin, batch by round robin over k-means clusters of the top candidates."""
    # Citovsky et al. 2021: margin picks the candidates, clusters spread the batch.
    return score_margin(units.probs)


@register_strategy("entropy")
def _entropy(units: UnitInputs) -> np.ndarray:
    """Normalised Shannon entropy of each softmax group and each tag."""
    return score_entropy(units.probs)


@register_strategy("mean_binary_entropy")
def _mean_binary_entropy(units: UnitInputs) -> np.ndarray:
    """Multi-label: the mean over tags of each tag's binary entropy (groups: their entropy)."""
    # On a Bernoulli unit entropy is binary entropy; combined by mean this is the textbook score.
    return score_entropy(units.probs)


@register_strategy("min_margin", combine="max")
def _min_margin(units: UnitInputs) -> np.ndarray:
    """Multi-label: the smallest margin over tags (groups: their top-2 margin)."""
    # 1 - margin is the score, so the smallest margin is the largest unit score: combine="max".
    return score_margin(units.probs)


@register_strategy("bald", requires=("mc_probs",))
def _bald(units: UnitInputs) -> np.ndarray:
    """BALD: mutual information between prediction and weights, from MC-dropout passes."""
    if units.mc_probs is None:
        raise InvalidInput("bald needs mc_probs (P, N, K)", code="missing_input")
    return score_bald(units.mc_probs)


@register_strategy("disagreement", requires=("modality_probs",))
def _disagreement(units: UnitInputs) -> np.ndarray:
    """Jensen-Shannon divergence between the visual and the audio heads."""
    if units.modality_probs is None:
        raise InvalidInput("disagreement needs modality_probs (M, N, K)", code="missing_input")
    return score_disagreement(units.modality_probs)
