"""The tag vocabulary as the model and the selector see it: an ordered list of tags.

Column ``j`` of every logit/probability matrix is ``tags[j]``. Tags that share a group are
mutually exclusive (one softmax over the group); a tag whose group is None is independent
(its own sigmoid). New tags are appended, so old columns keep their meaning across rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class TagVocabulary:
    tags: tuple[str, ...]
    groups: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if len(self.tags) != len(self.groups):
            raise ValueError("tags and groups must have the same length")
        if len(set(self.tags)) != len(self.tags):
            raise ValueError("tag names must be unique")

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str | None]]) -> TagVocabulary:
        items = list(pairs)
        return cls(tags=tuple(t for t, _ in items), groups=tuple(g for _, g in items))

    def to_json(self) -> list[dict[str, str | None]]:
        return [{"name": t, "group": g} for t, g in zip(self.tags, self.groups, strict=True)]

    @classmethod
    def from_json(cls, items: Sequence[dict[str, str | None]]) -> TagVocabulary:
        return cls.from_pairs((str(i["name"]), i.get("group")) for i in items)

    def __len__(self) -> int:
        return len(self.tags)

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    @cached_property
    def group_indices(self) -> dict[str, np.ndarray]:
        """Group name -> column indices of its tags, in vocabulary order (int64 arrays)."""
        out: dict[str, list[int]] = {}
        for i, g in enumerate(self.groups):
            if g is not None:
                out.setdefault(g, []).append(i)
        return {g: np.asarray(ix, dtype=np.int64) for g, ix in out.items()}

    @cached_property
    def ungrouped_indices(self) -> np.ndarray:
        """Column indices of the independent (sigmoid) tags, int64."""
        return np.asarray([i for i, g in enumerate(self.groups) if g is None], dtype=np.int64)

    def extend(self, pairs: Iterable[tuple[str, str | None]]) -> TagVocabulary:
        """A vocabulary with new tags appended; tags already present are kept as they are."""
        new = [(t, g) for t, g in pairs if t not in self.index]
        return TagVocabulary.from_pairs([*zip(self.tags, self.groups, strict=True), *new])
