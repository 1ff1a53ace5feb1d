"""Which suggested tags to pre-check: the rule the Label page and the Label Studio export share.

An independent tag is checked when its probability reaches the threshold. Tags of a group are
exclusive (one softmax), so a group checks at most its most likely tag, and only when that
reaches the group threshold (fitted for groups, ``training.thresholds.fit_group_threshold``;
the tags' threshold where none is): with a threshold below 0.5 two tags of one group could
both reach it, and checking both would contradict the vocabulary. A group also has an implicit
"none of these" outcome (``none_outcome``): its likeliest tag is checked only where it beats
that too. A stored suggestion of a grouped tag carries its group's ``p_none``
(``pipeline.scoring.top_tags``); one stored before "none" existed has none, and its group's
probabilities summed to 1, so its ``P(none)`` is 0.

A tag with no positive label in the predicting version's training data is never suggested
(``trained_suggestions``): the model knows nothing about it. After a first round on 30 labels
of a 10,000-tag vocabulary every such tag scored about 0.5, and the five suggestions were
the first five of them, pre-checked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def trained_suggestions(
    suggestions: Sequence[Mapping[str, Any]], *, trained: Collection[str] | None
) -> list[Mapping[str, Any]]:
    """The suggestions of tags in ``trained`` (those with a positive label in the predicting
    version's training data), in their order; all of them when ``trained`` is None (a
    version that did not record its training positives)."""
    if trained is None:
        return list(suggestions)
    return [s for s in suggestions if str(s.get("tag")) in trained]


def prechecked_tags(
    suggestions: Sequence[Mapping[str, Any]],
    *,
    groups: Mapping[str, str | None],
    threshold: float,
    group_threshold: float | None = None,
) -> list[str]:
    """Tags to pre-check, in suggestion order. ``suggestions``: ``{"tag", "p"}`` items, a
    grouped tag's with ``"p_none"`` (its group's P(none), 0 when absent); ``groups``: tag ->
    its group (None: independent; a tag missing here counts as one)."""
    group_cut = threshold if group_threshold is None else group_threshold
    best: dict[str, tuple[float, str, float]] = {}
    for s in suggestions:
        group = groups.get(str(s["tag"]))
        if group is not None and float(s["p"]) > best.get(group, (-1.0, "", 0.0))[0]:
            best[group] = (float(s["p"]), str(s["tag"]), float(s.get("p_none") or 0.0))
    winners = {tag for p, tag, p_none in best.values() if p > p_none}
    checked = []
    for s in suggestions:
        tag, p = str(s["tag"]), float(s["p"])
        if groups.get(tag) is None:
            if p >= threshold:
                checked.append(tag)
        elif tag in winners and p >= group_cut:
            checked.append(tag)
    return checked
