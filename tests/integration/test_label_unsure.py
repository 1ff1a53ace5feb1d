"""Unsure groups on a label over REST (issue 19 item 3): stored with the label, validated
against the tag groups (nothing stored on error), and left unknown by training targets while
every other group with no chosen tag is "none of these"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagloop.db import labels as label_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.training.targets import build_targets
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips, count_labels


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url)
    for name, group in [("zero", "digit"), ("one", "digit"), ("indoor", "scene"), ("dog", None)]:
        r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


def test_unsure_groups_are_stored_and_leave_the_group_unknown(api: ApiHarness, db_url: str) -> None:
    first, second = add_clips(db_url, 2)
    r = api.client.post(
        f"/api/v1/clips/{first}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "unsure_groups": [" DIGIT ", "digit"]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["unsure_groups"] == ["digit"]
    r = api.client.post(
        f"/api/v1/clips/{second}/labels", headers=api.annotator, json={"tags": ["dog"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["unsure_groups"] == []
    detail = api.client.get(f"/api/v1/clips/{first}", headers=api.annotator).json()
    assert detail["labels"][0]["unsure_groups"] == ["digit"]
    with session_scope(db_url) as s:
        vocab = tag_repo.load_vocabulary(s)
        labels = label_repo.latest_labels(s)
        unsure = label_repo.latest_unsure_groups(s)
    assert unsure == {first: ["digit"]}
    digit, scene = vocab.group_indices["digit"], vocab.group_indices["scene"]
    _, known = build_targets(labels[first], vocab=vocab, unsure_groups=unsure.get(first, ()))
    assert not known[digit].any() and known[scene].all()
    _, known = build_targets(labels[second], vocab=vocab, unsure_groups=unsure.get(second, ()))
    assert known.all()  # digit and scene: "none of these"


def test_a_newer_label_replaces_the_unsure_mark(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    url = f"/api/v1/clips/{clip}/labels"
    assert (
        api.client.post(
            url, headers=api.annotator, json={"tags": ["dog"], "unsure_groups": ["scene"]}
        ).status_code
        == 201
    )
    assert api.client.post(url, headers=api.annotator, json={"tags": ["dog"]}).status_code == 201
    with session_scope(db_url) as s:
        assert label_repo.latest_unsure_groups(s) == {}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tags": ["dog"], "unsure_groups": ["colour"]}, "unknown_group"),
        ({"tags": ["dog"], "unsure_groups": ["dog"]}, "unknown_group"),  # a tag, not a group
        ({"tags": ["one"], "unsure_groups": ["digit"]}, "conflicting_unsure_group"),
        ({"tags": ["dog"], "unsure_groups": ["scene"] * 201}, "too_many_groups"),
        ({"tags": ["dog"], "unsure_groups": "digit"}, "validation_error"),
    ],
)
def test_bad_unsure_groups_store_nothing(
    api: ApiHarness, db_url: str, body: dict[str, object], code: str
) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(f"/api/v1/clips/{clip}/labels", headers=api.annotator, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert count_labels(db_url) == 0
