"""The pure part of the long-tailed cold-start benchmark (tests/benchmarks/bench_cold_start_lt.py):
how right the pseudo-labels' decisions are on a multi-label vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from tagloop.training.cotrain import PseudoLabel
from tagloop.vocabulary import TagVocabulary
from tests.benchmarks.bench_cold_start_lt import pseudo_decision_accuracy

VOCAB = TagVocabulary.from_pairs(
    [("tint_grey", "tint"), ("tint_red", "tint"), ("seen_1", None), ("heard_4", None)]
)


def test_each_named_and_each_negative_tag_is_one_decision() -> None:
    truth = {
        7: np.array([1, 0, 1, 0], dtype=np.float32),  # grey, seen_1
        9: np.array([0, 1, 0, 1], dtype=np.float32),  # red, heard_4
    }
    labels = [
        # grey (right), seen_1 (right), heard_4 negative (right)
        PseudoLabel(
            clip_id=7,
            tags=["tint_grey", "seen_1"],
            source="visual",
            confidence=0.95,
            negative_tags=["heard_4"],
        ),
        # grey (wrong: red), heard_4 negative (wrong: it is heard)
        PseudoLabel(
            clip_id=9,
            tags=["tint_grey"],
            source="audio",
            confidence=0.91,
            negative_tags=["heard_4"],
        ),
    ]
    assert pseudo_decision_accuracy(labels, truth, vocab=VOCAB) == pytest.approx(3 / 5)


def test_nothing_decided_has_no_accuracy() -> None:
    assert pseudo_decision_accuracy([], {}, vocab=VOCAB) is None
