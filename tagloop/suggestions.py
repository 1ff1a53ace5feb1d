"""Which suggested tags to pre-check: the rule the Label page and the Label Studio export share.

An independent tag is checked when its probability reaches the threshold. Tags of a group are
exclusive (one softmax), so a group checks at most its most likely tag, and only when that
reaches the threshold: with a fitted threshold below 0.5 two tags of one group could both
reach it, and checking both would contradict the vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def prechecked_tags(
    suggestions: Sequence[Mapping[str, Any]],
    *,
    groups: Mapping[str, str | None],
    threshold: float,
) -> list[str]:
    """Tags to pre-check, in suggestion order. ``suggestions``: ``{"tag", "p"}`` items;
    ``groups``: tag -> its group (None: independent; a tag missing here counts as one)."""
    best: dict[str, tuple[float, str]] = {}
    for s in suggestions:
        group = groups.get(str(s["tag"]))
        if group is not None and float(s["p"]) > best.get(group, (-1.0, ""))[0]:
            best[group] = (float(s["p"]), str(s["tag"]))
    winners = {tag for _, tag in best.values()}
    return [
        str(s["tag"])
        for s in suggestions
        if float(s["p"]) >= threshold
        and (groups.get(str(s["tag"])) is None or str(s["tag"]) in winners)
    ]
