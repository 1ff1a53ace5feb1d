"""The Label page's check before submitting (issue 19): a group marked unsure takes no
checked tag, as the API's ``conflicting_unsure_group`` says."""

from __future__ import annotations

from ui.label_draft import conflicting_groups

GROUPS = {"indoor": "scene", "outdoor": "scene", "one": "digit", "cat": None}


def test_an_unsure_group_with_a_checked_tag_conflicts() -> None:
    assert conflicting_groups(["cat", "indoor"], ["digit", "scene"], groups=GROUPS) == ["scene"]


def test_ungrouped_and_unknown_tags_conflict_with_nothing() -> None:
    # cat has no group; "zebra" is not on the page (the API still checks it).
    assert conflicting_groups(["cat", "zebra"], ["scene"], groups=GROUPS) == []
    assert conflicting_groups([], ["scene", "digit"], groups=GROUPS) == []
    assert conflicting_groups(["one"], [], groups=GROUPS) == []
