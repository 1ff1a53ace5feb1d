from tagloop.none_outcome import group_truth
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


def test_a_label_is_complete_a_group_without_a_tag_is_none() -> None:
    # Was: a group is known only when the label names one of its tags (issue 19 item 3).
    targets, known = build_targets(["1", "music"], vocab=VOCAB)
    assert targets.tolist() == [0, 1, 0, 0, 1, 0]
    assert known.all()  # scene is known with no positive: "none of these"
    group = VOCAB.group_indices["scene"]
    assert group_truth(targets[None], known[None], group).tolist() == [2]


def test_unsure_group_stays_unknown() -> None:
    targets, known = build_targets(["1"], vocab=VOCAB, unsure_groups=["scene"])
    assert known.tolist() == [True, True, False, False, True, True]
    assert group_truth(targets[None], known[None], VOCAB.group_indices["scene"]).tolist() == [-1]
    assert group_truth(targets[None], known[None], VOCAB.group_indices["digit"]).tolist() == [1]


def test_a_chosen_tag_decides_its_group_even_when_marked_unsure() -> None:
    _, known = build_targets(["indoor"], vocab=VOCAB, unsure_groups=["scene", "no such group"])
    assert known.all()


def test_unknown_names_are_ignored() -> None:
    targets, known = build_targets(["nope"], vocab=VOCAB)
    assert not targets.any()
    # Was: groups unknown. Now every group is "none" and every ungrouped tag a no.
    assert known.all()


def test_promotion_guard() -> None:
    assert should_promote(0.80, None, tolerance=0.01)
    assert should_promote(0.795, 0.80, tolerance=0.01)
    assert not should_promote(0.78, 0.80, tolerance=0.01)
    assert should_promote(0.90, 0.80, tolerance=0.0)
