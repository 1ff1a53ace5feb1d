"""The strategy registry: a strategy is a small scoring function behind a name.

A strategy scores *units*. A unit is one categorical distribution over the last axis ``C``: a
mutually exclusive tag group (one softmax over its columns, its implicit "none" last) or an
independent tag seen as the Bernoulli pair ``(1 - p, p)``.
:func:`tagloop.selection.score.score_pool` cuts a clip's
probabilities into units, calls the strategy on each, and combines the unit scores per clip.
A strategy also names the batch rule that turns its top candidates into a batch
(:func:`tagloop.selection.batch.assemble_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tagloop.errors import InvalidInput

Combine = Literal["mean", "max"]
COMBINE_RULES: tuple[str, ...] = ("mean", "max")
# Inputs beyond the fused probabilities that a strategy may need.
Requirement = Literal["mc_probs", "modality_probs", "tag_counts"]
# How the top candidates become a batch: farthest-first on embeddings, round robin over
# k-means clusters of them (cluster margin, Citovsky et al. 2021), or the top of the ranking
# with no diversity step ("rank": random's, so it stays a uniform sample).
BatchRule = Literal["k_center", "cluster_round_robin", "rank"]
BATCH_RULES: tuple[str, ...] = ("k_center", "cluster_round_robin", "rank")


@dataclass(frozen=True)
class UnitInputs:
    """The arrays a unit scorer sees, all for the same units.

    probs: ``(..., C)`` the fused model's probabilities.
    mc_probs: ``(P, ..., C)`` probabilities from P stochastic (MC-dropout) passes, or None.
    modality_probs: ``(M, ..., C)`` probabilities of M single-modality heads
        (visual, audio), or None.
    tag_weights: per-outcome weights in [0, 1] broadcastable to ``probs``: ``(C,)`` for a
        group (its tags' weights, "none" last), ``(L, 2)`` for L independent tags (the tag's
        weight on both outcomes of its Bernoulli pair); None unless the strategy requires
        ``tag_counts``.
    """

    probs: np.ndarray
    mc_probs: np.ndarray | None = None
    modality_probs: np.ndarray | None = None
    tag_weights: np.ndarray | None = None


UnitScorer = Callable[[UnitInputs], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy.

    score_unit: ``UnitInputs (..., C) -> (...)`` scores in [0, 1], higher = more worth
        labeling; None for strategies that ignore the predictions (random).
    requires: the optional inputs of ``score_pool`` the strategy cannot do without.
    combine: how a clip's unit scores are combined unless the caller says otherwise.
    batch: how ``assemble_batch`` picks the batch among the top candidates.
    """

    name: str
    score_unit: UnitScorer | None
    requires: frozenset[Requirement] = field(default_factory=frozenset)
    combine: Combine = "mean"
    description: str = ""
    batch: BatchRule = "k_center"


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(
    name: str,
    *,
    requires: tuple[Requirement, ...] = (),
    combine: Combine = "mean",
    description: str = "",
    batch: BatchRule = "k_center",
) -> Callable[[UnitScorer], UnitScorer]:
    """Decorator: register ``fn`` as the unit scorer of strategy ``name``."""
    if combine not in COMBINE_RULES:
        raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
    if batch not in BATCH_RULES:
        raise ValueError(f"batch must be one of {BATCH_RULES}, got {batch!r}")

    def decorate(fn: UnitScorer) -> UnitScorer:
        add_strategy(
            Strategy(
                name=name,
                score_unit=fn,
                requires=frozenset(requires),
                combine=combine,
                description=description or (fn.__doc__ or "").strip().split("\n")[0],
                batch=batch,
            )
        )
        return fn

    return decorate


def add_strategy(strategy: Strategy) -> None:
    """Register ``strategy``; a name can be registered once."""
    if strategy.name in _REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    _REGISTRY[strategy.name] = strategy


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; InvalidInput ``unknown_strategy`` otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInput(
            f"unknown selection strategy {name!r}; known: {', '.join(list_strategies())}",
            code="unknown_strategy",
        ) from None


def list_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)
