"""Tags and labels over REST on SQLite and PostgreSQL: creation, duplicates, validation,
unknown and conflicting tags (nothing stored on error), several labels per clip."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label, Video
from tests.integration.api_helpers import ApiHarness, make_api

TAGS = "/api/v1/tags"


def add_clips(db_url: str, n: int, *, sha: str = "a") -> list[int]:
    """One video with ``n`` minimal clips (no media): enough for labels and the queue."""
    with session_scope(db_url) as s:
        video = Video(sha256=sha * 64, filename=f"{sha}.mp4", blob_uri=f"videos/{sha}")
        s.add(video)
        s.flush()
        clips = [Clip(video_id=video.id, index=i, start_s=i, end_s=i + 1) for i in range(n)]
        s.add_all(clips)
        s.flush()
        return [c.id for c in clips]


def count_labels(db_url: str) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count(Label.id))) or 0)


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url)
    for name, group in [("zero", "digit"), ("one", "digit"), ("indoor", "scene"), ("dog", None)]:
        r = h.client.post(TAGS, headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


def test_tags_create_list_and_duplicates(api: ApiHarness) -> None:
    c = api.client
    r = c.post(TAGS, headers=api.admin, json={"name": "  cat  ", "description": "a cat"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "cat" and body["group"] is None and body["description"] == "a cat"
    listed = c.get(TAGS, headers=api.annotator).json()["items"]
    assert [t["name"] for t in listed] == ["zero", "one", "indoor", "dog", "cat"]
    assert [t["group"] for t in listed][:3] == ["digit", "digit", "scene"]
    r = c.post(TAGS, headers=api.admin, json={"name": "cat "})
    assert r.status_code == 409 and r.json()["error"]["code"] == "tag_exists"
    assert len(c.get(TAGS, headers=api.admin).json()["items"]) == 5


@pytest.mark.parametrize("name", ["", "   ", "x" * 129])
def test_tag_names_are_validated(api: ApiHarness, name: str) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": name})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_tag_name"
    assert len(api.client.get(TAGS, headers=api.admin).json()["items"]) == 4


def test_tag_name_of_128_chars_is_accepted_and_admin_only(api: ApiHarness) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": "y" * 128})
    assert r.status_code == 201 and r.json()["name"] == "y" * 128
    r = api.client.post(TAGS, headers=api.annotator, json={"name": "nope"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert api.client.get(TAGS).status_code == 401


def test_label_submit_good_tags(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels",
        headers=api.annotator,
        json={"tags": ["one", " dog", "one", "indoor"], "seconds_spent": 4.5},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["annotator"] == "ann" and body["clip_id"] == clip
    assert body["tags"] == ["one", "dog", "indoor"] and body["seconds_spent"] == 4.5
    assert body["lease_closed"] is False
    # Several labels per clip, from anyone; "none of these apply" is a label too, on purpose.
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels", headers=api.admin, json={"tags": [], "none_apply": True}
    )
    assert r.status_code == 201 and r.json()["annotator"] == "root"
    detail = api.client.get(f"/api/v1/clips/{clip}", headers=api.admin).json()
    assert [lb["tags"] for lb in detail["labels"]] == [["one", "dog", "indoor"], []]
    assert count_labels(db_url) == 2


def test_unknown_tags_store_nothing(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels",
        headers=api.annotator,
        json={"tags": ["dog", "unicorn", "two"]},
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "unknown_tag" and err["tags"] == ["unicorn", "two"]
    assert "unicorn" in err["message"]
    assert count_labels(db_url) == 0


def test_conflicting_tags_store_nothing(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels", headers=api.annotator, json={"tags": ["zero", "one"]}
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "conflicting_tags" and "digit" in err["message"]
    assert count_labels(db_url) == 0


def test_label_errors_for_clip_and_body(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        "/api/v1/clips/999999/labels", headers=api.annotator, json={"none_apply": True}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "clip_not_found"
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "seconds_spent": -1},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = api.client.post(f"/api/v1/clips/{clip}/labels", headers=api.annotator, json={})
    assert r.status_code == 422
    r = api.client.post(
        f"/api/v1/clips/{clip}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "lease_id": "not-a-lease"},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    assert count_labels(db_url) == 0
