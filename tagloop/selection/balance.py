"""Class-balanced uncertainty: uncertainty on rare tags counts more.

Plain uncertainty spends labels where the model is unsure, and with a long-tailed vocabulary
that is mostly among the frequent tags, so rare tags stay rare. Here each unit's uncertainty is
weighted by how rare its tag is among the labeled clips, with smoothed inverse-frequency
weights ``1 / sqrt(n + 1)`` divided by the largest, so a tag nobody has labeled yet weighs 1
and the weights lie in (0, 1]. With equal counts every weight is 1 and the score is plain
entropy (mean binary entropy on independent tags). Importing this module registers
``balanced_entropy`` and ``balanced_cluster`` (the same score, batch by cluster round robin as
in ``cluster_margin``: the weights pick the candidates, the clusters spread the batch), and
``tag_balanced_cluster``, which weights independent tags only.

Why not groups: a group's weight is the rarity of the class a clip probably belongs to, so
a rare group member that the model cannot yet tell apart pulls the batch toward clips that
only look like it, and its frequent member's small weight mutes the group's confusions with
it. On the long-tailed benchmark ``balanced_cluster`` lost 19 points of AP on ``tint_red``
and 26 on ``tint_green`` against random. Scoring a group by its plain entropy gave them back
(``tint_red`` level with random) and kept the tail's gain on the 20,000-clip pool, but on
the integration test's 400-clip pool, whose rarest tags include group members
(``tint_blue``, ``noise_clicks``), it found fewer rare clips than a uniform draw
(bench_al_lt, bench_al_lt_small, BENCHMARKS.md). So it is not the default.
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.selection.registry import UnitInputs, register_strategy
from tagloop.selection.strategy import score_entropy
from tagloop.selection.validate import check_counts


def count_tag_labels(targets: np.ndarray) -> np.ndarray:
    """Per-tag label counts ``(K,)`` float64: how many labeled clips carry each tag.

    targets: ``(N, K)`` multi-hot targets of the labeled clips (``training.targets``), one row
    per clip. The service (from its labels table) and the simulation (from its oracle's
    labeled rows) both count with this function.
    """
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2:
        raise InvalidInput(f"targets has shape {t.shape}, expected (N, K)", code="invalid_counts")
    return (t > 0.5).sum(axis=0).astype(np.float64)


def class_balanced_weights(counts: np.ndarray) -> np.ndarray:
    """Weights ``(K,)`` in (0, 1] from per-tag label counts ``(K,)``: rarer tag, higher weight.

    ``1 / sqrt(n + 1)`` (smoothed, so a tag with no labels is finite and one label does not
    outweigh a hundred by a hundredfold), divided by the largest: the rarest tag weighs 1.
    """
    c = check_counts(counts)
    if c.size == 0:
        return c
    raw = 1.0 / np.sqrt(c + 1.0)
    return raw / raw.max()


def score_balanced_entropy(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(..., C), (..., C) -> (...)``: normalised entropy times the unit's expected weight.

    weights: per-outcome weights broadcastable to ``probs``. A unit's weight is the mean of
    its outcomes' weights under the predicted distribution, ``sum_c p_c w_c``. For a group this
    is the rarity of the class the clip probably belongs to: a clip torn between two rare
    digits outranks one torn between two frequent digits, and a clip that looks like a rare
    class counts more. It is chosen over the weight of the argmax class because it is smooth
    in ``p`` (no jump when two classes swap rank) and over the mean weight of the group
    because that would be the same for every clip. For an independent tag both outcomes carry
    the tag's weight, so the unit weighs exactly that.
    """
    weight = (probs * weights).sum(axis=-1)
    return np.clip(score_entropy(probs) * weight, 0.0, 1.0)


@register_strategy("balanced_entropy", requires=("tag_counts",))
def _balanced_entropy(units: UnitInputs) -> np.ndarray:
    """Entropy weighted by the rarity of each unit's tags among the labeled clips."""
    if units.tag_weights is None:
        raise InvalidInput("balanced_entropy needs tag_counts (K,)", code="missing_input")
    return score_balanced_entropy(units.probs, units.tag_weights)


@register_strategy("balanced_cluster", requires=("tag_counts",), batch="cluster_round_robin")
def _balanced_cluster(units: UnitInputs) -> np.ndarray:
    """Class-balanced entropy, batch by round robin over k-means clusters of the top candidates."""
    # balanced_entropy alone finds the most rare-tag positives but crowds a batch into the few
    # regions where rare tags are uncertain; the clusters spread it (bench_al_lt).
    return _balanced_entropy(units)


@register_strategy("tag_balanced_cluster", requires=("tag_counts",), batch="cluster_round_robin")
def _tag_balanced_cluster(units: UnitInputs) -> np.ndarray:
    """Class-balanced entropy on independent tags, a group's plain entropy; cluster batch."""
    # A group unit carries (C,) weights, an independent tag's Bernoulli pairs (L, 2)
    # (registry.UnitInputs). The group scores as a tag nobody has labeled (weight 1).
    if units.tag_weights is None:
        raise InvalidInput("tag_balanced_cluster needs tag_counts (K,)", code="missing_input")
    if units.tag_weights.ndim == 1:
        return score_entropy(units.probs)
    return score_balanced_entropy(units.probs, units.tag_weights)
