import numpy as np

from tagloop.pipeline.training import should_promote
from tagloop.training.targets import build_targets
from tagloop.vocabulary import TagVocabulary

VOCAB = TagVocabulary.from_pairs(
    [
        ("0", "digit"),
        ("1", "digit"),
        ("indoor", "scene"),
        ("outdoor", "scene"),
        ("music", None),
        ("speech", None),
    ]
)


def test_groups_known_only_when_named_and_ungrouped_always_known() -> None:
    targets, known = build_targets(["1", "music"], vocab=VOCAB)
    assert targets.tolist() == [0, 1, 0, 0, 1, 0]
    assert known.tolist() == [True, True, False, False, True, True]


def test_unknown_names_are_ignored() -> None:
    targets, known = build_targets(["nope"], vocab=VOCAB)
    assert not targets.any()
    assert np.array_equal(known, [False, False, False, False, True, True])


def test_promotion_guard() -> None:
    assert should_promote(0.80, None, tolerance=0.01)
    assert should_promote(0.795, 0.80, tolerance=0.01)
    assert not should_promote(0.78, 0.80, tolerance=0.01)
    assert should_promote(0.90, 0.80, tolerance=0.0)
