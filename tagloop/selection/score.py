"""Score a pool of clips with a named strategy, tag groups respected.

A clip's units are its vocabulary's mutually exclusive groups (each scored over its own softmax
columns plus the group's implicit "none", the mass its columns leave: ``none_outcome``) and its
independent tags (each scored as a Bernoulli pair). The clip's score combines its unit scores:
the mean by default, or the max (the clip is as interesting as its least sure unit). A group of
one tag is a yes/no question (its tag or none), scored like an independent tag.

With ``columns`` (the tags a model version was trained on) only the units the version knows
are scored: a head never trained on a tag scores it a constant (0.5 after a round on few
labels), the same on every clip, which would tie every clip under ``min_margin`` and dilute
the mean of the others (issue 22).
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.none_outcome import with_none
from tagloop.selection.balance import class_balanced_weights
from tagloop.selection.registry import COMBINE_RULES, Combine, UnitInputs, get_strategy
from tagloop.selection.strategy import score_random, to_bernoulli
from tagloop.selection.validate import (
    check_columns,
    check_counts,
    check_group_sums,
    check_ids,
    check_probabilities,
)
from tagloop.vocabulary import TagVocabulary


def _check_stack(
    x: np.ndarray | None, *, name: str, n: int, k: int, min_depth: int, strategy: str
) -> np.ndarray:
    if x is None:
        raise InvalidInput(f"strategy {strategy!r} needs {name}", code="missing_input")
    stack = check_probabilities(x, name=name, shape=(None, n, k))
    if stack.shape[0] < min_depth:
        raise InvalidInput(
            f"{name} needs at least {min_depth} stacked predictions, got {stack.shape[0]}",
            code="invalid_probabilities",
        )
    return stack


def _with_none_weight(weights: np.ndarray) -> np.ndarray:
    """A group's tag weights ``(C,)`` and its "none" outcome's ``(C + 1,)``. Labels count no
    "none", so it weighs as the group's average tag: neither rare nor common."""
    return np.append(weights, weights.mean() if weights.size else 1.0)


def score_pool(
    probs: np.ndarray,
    *,
    vocab: TagVocabulary,
    strategy: str,
    combine: Combine | None = None,
    mc_probs: np.ndarray | None = None,
    modality_probs: np.ndarray | None = None,
    tag_counts: np.ndarray | None = None,
    clip_ids: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """Scores ``(N,)`` float64 in [0, 1] for N clips; higher = more worth labeling.

    probs: ``(N, K)`` the fused model's probabilities, column ``j`` is ``vocab.tags[j]``; the
        columns of each group sum to at most 1 (one softmax; the rest is "none"), the other
        columns are sigmoids.
    strategy: a registered name (see ``list_strategies()``).
    combine: ``"mean"`` or ``"max"`` over a clip's units; None takes the strategy's own rule
        (``"mean"`` for all but ``min_margin``, which is ``"max"``).
    mc_probs: ``(P, N, K)`` probabilities of P stochastic MC-dropout passes (``bald``).
    modality_probs: ``(M, N, K)`` probabilities of M >= 2 single-modality heads, e.g. visual
        and audio (``disagreement``).
    tag_counts: ``(K,)`` how many labeled clips carry each tag, from ``count_tag_labels``
        (``balanced_entropy``); turned into per-tag weights by ``class_balanced_weights``.
    clip_ids: ``(N,)`` int ids; with them ``random`` scores a clip by a hash of (seed, id), so
        they do not depend on row order or chunking.
    rng: a seed or Generator, used by ``random`` only.
    columns: ``(T,)`` the columns the model knows (``pipeline.scoring.trained_columns``: the
        tags with a positive label in its training data); only their units are scored, as if
        the vocabulary held only those units (tag weights included). None: every column.

    Every other strategy treats rows independently: permuting the rows permutes the scores.
    """
    spec = get_strategy(strategy)
    rule = spec.combine if combine is None else combine
    if rule not in COMBINE_RULES:
        raise InvalidInput(
            f"combine must be one of {', '.join(COMBINE_RULES)}, got {combine!r}",
            code="invalid_argument",
        )
    k = len(vocab)
    p = check_probabilities(probs, name="probs", shape=(None, k))
    n = p.shape[0]
    ids = None if clip_ids is None else check_ids(clip_ids, n=n, unique=False)
    if spec.score_unit is None:
        return score_random(n, clip_ids=ids, rng=rng)

    mc = (
        _check_stack(mc_probs, name="mc_probs", n=n, k=k, min_depth=1, strategy=spec.name)
        if "mc_probs" in spec.requires
        else None
    )
    heads = (
        _check_stack(
            modality_probs, name="modality_probs", n=n, k=k, min_depth=2, strategy=spec.name
        )
        if "modality_probs" in spec.requires
        else None
    )
    groups = list(vocab.group_indices.items())
    free = vocab.ungrouped_indices
    if columns is not None:
        known = np.zeros(k, dtype=bool)
        known[check_columns(columns, k=k)] = True
        # A group counts when any of its tags is trained, and then keeps its whole
        # distribution, every column and "none" (none_outcome), as without columns: its
        # softmax is fit on every clip where the group is decided, so an untrained member's
        # probability is learned (pushed down), not a blank head's; dropping its column would
        # move its mass into "none".
        groups = [(g, cols) for g, cols in groups if known[cols].any()]
        free = free[known[free]]
    weights = None
    if "tag_counts" in spec.requires:
        if tag_counts is None:
            raise InvalidInput(f"strategy {spec.name!r} needs tag_counts", code="missing_input")
        counts = check_counts(tag_counts, k=k)
        if columns is None:
            weights = class_balanced_weights(counts)
        else:
            # Relative to the rarest scored tag, as on a vocabulary of the scored units alone
            # (an unscored tag with no label would otherwise set the scale).
            scored = np.concatenate([free, *(cols for _, cols in groups)]).astype(np.int64)
            weights = np.ones(k)
            weights[scored] = class_balanced_weights(counts[scored])

    blocks: list[np.ndarray] = []  # each (N, units in block)
    for group, cols in groups:
        check_group_sums(p[:, cols], name="probs", group=group)
        if mc is not None:
            check_group_sums(mc[:, :, cols], name="mc_probs", group=group)
        if heads is not None:
            check_group_sums(heads[:, :, cols], name="modality_probs", group=group)
        units = UnitInputs(
            probs=with_none(p[:, cols]),
            mc_probs=None if mc is None else with_none(mc[:, :, cols]),
            modality_probs=None if heads is None else with_none(heads[:, :, cols]),
            tag_weights=None if weights is None else _with_none_weight(weights[cols]),
        )
        blocks.append(spec.score_unit(units).reshape(n, 1))
    if free.size:
        units = UnitInputs(
            probs=to_bernoulli(p[:, free]),
            mc_probs=None if mc is None else to_bernoulli(mc[:, :, free]),
            modality_probs=None if heads is None else to_bernoulli(heads[:, :, free]),
            # A tag's weight on both outcomes of its pair: (L, 2).
            tag_weights=None if weights is None else np.repeat(weights[free, None], 2, axis=1),
        )
        blocks.append(spec.score_unit(units).reshape(n, free.size))
    if not blocks:
        return np.zeros(n)
    unit_scores = np.concatenate(blocks, axis=1)
    combined = unit_scores.mean(axis=1) if rule == "mean" else unit_scores.max(axis=1)
    return combined.astype(np.float64, copy=False)
