"""Turn stored tag sets into training targets over a vocabulary (pure numpy)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from tagloop.vocabulary import TagVocabulary


def build_targets(
    tags: Sequence[str], *, vocab: TagVocabulary, unsure_groups: Collection[str] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (K,) float32 multi-hot, known (K,) bool)`` for one clip's label.

    A label is complete unless said otherwise: a tag not chosen is a no, and a group with no
    chosen tag is "none of these" (its columns known, all 0: ``none_outcome``), unless the
    annotator marked the group unsure (``unsure_groups``): then the group stays unknown. A
    chosen tag decides its group even if the group is also marked unsure. Ungrouped tags are
    independent yes/no questions: a label is a complete answer to them, so absent means no.
    """
    targets = np.zeros(len(vocab), dtype=np.float32)
    known = np.ones(len(vocab), dtype=bool)
    for name in tags:
        j = vocab.index.get(name)
        if j is not None:
            targets[j] = 1.0
    groups = vocab.group_indices
    for group in unsure_groups:
        columns = groups.get(group)
        if columns is not None and not targets[columns].any():
            known[columns] = False
    return targets, known
