"""Turn stored tag sets into training targets over a vocabulary (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagloop.vocabulary import TagVocabulary


def build_targets(tags: Sequence[str], *, vocab: TagVocabulary) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (K,) float32 multi-hot, known (K,) bool)`` for one clip's label.

    A group is known only when the label names one of its tags (an annotator who tagged
    "outdoor" said nothing about the digit). Ungrouped tags are independent yes/no
    questions: a label is a complete answer to them, so absent means no.
    """
    targets = np.zeros(len(vocab), dtype=np.float32)
    known = np.zeros(len(vocab), dtype=bool)
    for name in tags:
        j = vocab.index.get(name)
        if j is not None:
            targets[j] = 1.0
    for columns in vocab.group_indices.values():
        if targets[columns].any():
            known[columns] = True
    known[vocab.ungrouped_indices] = True
    return targets, known
