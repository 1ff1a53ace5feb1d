"""The pre-check rule (tagloop.suggestions)."""

from __future__ import annotations

from tagloop.suggestions import prechecked_tags, trained_suggestions

GROUPS = {"cat": None, "dog": None, "indoor": "scene", "outdoor": "scene", "day": "time"}


def test_independent_tags_are_checked_from_the_threshold_on() -> None:
    got = prechecked_tags(
        [{"tag": "cat", "p": 0.3}, {"tag": "dog", "p": 0.29}], groups=GROUPS, threshold=0.3
    )
    assert got == ["cat"]


def test_a_group_checks_at_most_its_most_likely_tag() -> None:
    suggestions = [
        {"tag": "outdoor", "p": 0.35},
        {"tag": "cat", "p": 0.9},
        {"tag": "indoor", "p": 0.45},
        {"tag": "day", "p": 0.2},
    ]
    # Both scene tags reach 0.3; only indoor, the likelier, is checked. day misses it.
    assert prechecked_tags(suggestions, groups=GROUPS, threshold=0.3) == ["cat", "indoor"]
    # A group's best tag below the threshold checks nothing of that group.
    assert prechecked_tags(suggestions, groups=GROUPS, threshold=0.5) == ["cat"]


def test_tags_unknown_to_the_vocabulary_count_as_independent() -> None:
    got = prechecked_tags([{"tag": "zebra", "p": 0.6}], groups=GROUPS, threshold=0.5)
    assert got == ["zebra"]


def test_groups_use_their_own_threshold_when_there_is_one() -> None:
    suggestions = [
        {"tag": "cat", "p": 0.4},
        {"tag": "indoor", "p": 0.3},
        {"tag": "outdoor", "p": 0.25},
        {"tag": "day", "p": 0.2},
    ]
    # A ten-way softmax's best guess at 0.3 is a confident one: the group cut is lower.
    got = prechecked_tags(suggestions, groups=GROUPS, threshold=0.5, group_threshold=0.25)
    assert got == ["indoor"]  # cat misses the tags' 0.5; day misses the groups' 0.25
    got = prechecked_tags(suggestions, groups=GROUPS, threshold=0.35, group_threshold=0.9)
    assert got == ["cat"]  # the group cut applies to groups only, both ways


def test_tags_the_model_was_never_trained_on_are_not_suggested() -> None:
    """After a round on 30 labels of 10,000 tags, the never-labeled tags all scored 0.5 and
    were the five suggestions, pre-checked; only tags with a training positive are kept."""
    top = [
        {"tag": "tag_0000", "p": 0.5},
        {"tag": "tag_0001", "p": 0.5},
        {"tag": "indoor", "p": 0.45, "p_none": 0.1},
        {"tag": "cat", "p": 0.3},
    ]
    shown = trained_suggestions(top, trained=frozenset({"cat", "indoor", "dog"}))
    assert [s["tag"] for s in shown] == ["indoor", "cat"]
    assert shown[0] == top[2]  # the items as stored, p_none included
    assert prechecked_tags(shown, groups=GROUPS, threshold=0.5) == []
    # Nothing known: nothing suggested; a version without the record: all of them.
    assert trained_suggestions(top, trained=frozenset()) == []
    assert trained_suggestions(top, trained=None) == top
