"""Hostile input through the real API on SQLite and PostgreSQL: every case is a clean error
``{"error": {"code", "message"}}`` with a stable code, never a 500 and never a partial write.

Covered: tag names that differ only in case or spacing, control characters, empty labels
(``none_apply``), oversized tag sets, ids out of the 32-bit range, tampered cursors and
limits, import paths that escape the roots (the basic escapes are in test_api.py), Range
header abuse on clip media, role checks, skip reasons, queue lanes and HTML-looking names.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from httpx import Response
from sqlalchemy import func, select

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label, LabelHistory, Tag
from tagloop.storage import BlobStore
from tests.conftest import VIDEOS
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips

TAGS = "/api/v1/tags"
TOO_BIG = [2**70, 2**63, 2**31, -1, 0]


def expect_error(r: Response, status: int, code: str) -> dict:
    """Assert the status and the error code of a JSON error body; return the error."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert set(error) >= {"code", "message"} and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def count(db_url: str, model: type[Label] | type[Tag] | type[LabelHistory]) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def labels_url(clip_id: int) -> str:
    return f"/api/v1/clips/{clip_id}/labels"


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url, import_roots=[tmp_path / "imports"])
    for name, group in [("dog", None), ("zero", "digit"), ("one", "digit")]:
        r = h.client.post(TAGS, headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


# --- Tag names: unique ignoring case and spacing ------------------------------------------


@pytest.mark.parametrize("name", ["Dog", "DOG", " dOg ", "\tdog\n", "ZERO"])
def test_tag_names_differing_in_case_or_spacing_conflict(
    api: ApiHarness, db_url: str, name: str
) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": name})
    expect_error(r, 409, "tag_exists")
    assert count(db_url, Tag) == 3


def test_tag_name_spacing_and_unicode_case_are_normalised(api: ApiHarness, db_url: str) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": "  hot \t  dog "})
    assert r.status_code == 201 and r.json()["name"] == "hot dog"
    expect_error(
        api.client.post(TAGS, headers=api.admin, json={"name": "Hot Dog"}), 409, "tag_exists"
    )
    r = api.client.post(TAGS, headers=api.admin, json={"name": "Straße"})
    assert r.status_code == 201 and r.json()["name"] == "Straße"
    r = api.client.post(TAGS, headers=api.admin, json={"name": "STRASSE"})
    expect_error(r, 409, "tag_exists")
    assert count(db_url, Tag) == 5


def test_labels_match_tags_ignoring_case_and_store_the_canonical_name(
    api: ApiHarness, db_url: str
) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        labels_url(clip), headers=api.annotator, json={"tags": ["DOG", " Dog ", "ONE"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["tags"] == ["dog", "one"]
    detail = api.client.get(f"/api/v1/clips/{clip}", headers=api.annotator).json()
    assert [lb["tags"] for lb in detail["labels"]] == [["dog", "one"]]
    # Case does not get around the one-per-group rule, nor make an unknown tag known.
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["Zero", "one"]})
    expect_error(r, 422, "conflicting_tags")
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["Cat"]})
    assert expect_error(r, 422, "unknown_tag")["tags"] == ["Cat"]
    assert count(db_url, Label) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\x00b"},
        {"name": "bell\x07"},
        {"name": "\x1b[31mred"},
        {"name": "x" * 10_000},
        {"name": "ok", "group": "g\x00"},
    ],
)
def test_tag_names_with_control_characters_or_too_long(
    api: ApiHarness, db_url: str, body: dict
) -> None:
    expect_error(api.client.post(TAGS, headers=api.admin, json=body), 422, "invalid_tag_name")
    assert count(db_url, Tag) == 3


def test_tag_description_with_nul(api: ApiHarness, db_url: str) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": "cat", "description": "a\x00"})
    expect_error(r, 422, "invalid_tag_description")
    assert count(db_url, Tag) == 3


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        (TAGS, b'{"name": "a\\ud800b"}', "invalid_tag_name"),
        (TAGS, b'{"name": "cat", "description": "\\udfff"}', "invalid_tag_description"),
        ("/api/v1/queue/x/skip", b'{"reason": "\\ud800"}', "validation_error"),
    ],
)
def test_lone_surrogates_in_text(api: ApiHarness, path: str, raw: bytes, code: str) -> None:
    """JSON may escape a lone surrogate, which no database can store as UTF-8 text."""
    headers = {**api.admin, "Content-Type": "application/json"}
    expect_error(api.client.post(path, headers=headers, content=raw), 422, code)


def test_label_tag_names_with_control_characters(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["d\x00og"]})
    expect_error(r, 422, "invalid_tag_name")
    assert count(db_url, Label) == 0


def test_html_looking_names_are_stored_literally_and_returned_as_json(
    api: ApiHarness, db_url: str
) -> None:
    name = "<script>alert('x')</script>"
    desc = '<img src=x onerror="alert(1)">&amp;'
    r = api.client.post(TAGS, headers=api.admin, json={"name": name, "description": desc})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert (r.json()["name"], r.json()["description"]) == (name, desc)
    listed = api.client.get(TAGS, headers=api.annotator)
    assert listed.headers["content-type"].startswith("application/json")
    assert "text/html" not in listed.headers["content-type"]
    assert name in [t["name"] for t in json.loads(listed.text)["items"]]
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": [name.upper()]})
    assert r.status_code == 201 and r.json()["tags"] == [name]
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["<b>bold</b>"]})
    assert expect_error(r, 422, "unknown_tag")["tags"] == ["<b>bold</b>"]


# --- Labels: empty sets need none_apply; oversized sets ------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tags": []}, "empty_label"),
        ({}, "empty_label"),
        ({"tags": [], "none_apply": False}, "empty_label"),
        ({"tags": ["dog"], "none_apply": True}, "conflicting_none_apply"),
        ({"tags": ["dog"] * 10_000}, "too_many_tags"),
        ({"tags": [f"t{i}" for i in range(201)]}, "too_many_tags"),
        ({"tags": ["   "]}, "invalid_tag_name"),
        ({"tags": "dog"}, "validation_error"),
        ({"tags": [1, 2]}, "validation_error"),
        ({"tags": None}, "validation_error"),
        ({"tags": ["dog"], "lease_id": "x" * 65}, "validation_error"),
        ({"tags": ["dog"], "seconds_spent": "soon"}, "validation_error"),
    ],
)
def test_bad_label_bodies_store_nothing(
    api: ApiHarness, db_url: str, body: dict, code: str
) -> None:
    clip = add_clips(db_url, 1)[0]
    expect_error(api.client.post(labels_url(clip), headers=api.annotator, json=body), 422, code)
    assert count(db_url, Label) == 0


def test_none_apply_stores_an_empty_label_that_exports(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"none_apply": True})
    assert r.status_code == 201 and r.json()["tags"] == []
    r = api.client.post(
        labels_url(clip), headers=api.annotator, json={"tags": [], "none_apply": True}
    )
    assert r.status_code == 201 and r.json()["tags"] == []
    # Up to 200 entries is fine; duplicates collapse.
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["dog"] * 200})
    assert r.status_code == 201 and r.json()["tags"] == ["dog"]
    # One label per annotator and clip: the second empty label equals the first (nothing
    # changes), ["dog"] replaced it (the empty one is kept in the history).
    lines = api.client.get("/api/v1/export", params={"format": "jsonl"}, headers=api.admin)
    (record,) = [json.loads(line) for line in lines.text.splitlines()]
    assert [lb["tags"] for lb in record["labels"]] == [["dog"]]
    assert count(db_url, LabelHistory) == 1
    r = api.client.post(labels_url(clip), headers=api.admin, json={"none_apply": True})
    lines = api.client.get("/api/v1/export", params={"format": "jsonl"}, headers=api.admin)
    (record,) = [json.loads(line) for line in lines.text.splitlines()]
    assert [(lb["annotator"], lb["tags"]) for lb in record["labels"]] == [
        ("ann", ["dog"]),
        ("root", []),
    ]


def test_label_studio_import_with_a_huge_tag_set(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    result = [{"type": "choices", "value": {"choices": [f"t{i}" for i in range(10_000)]}}]
    tasks = [{"data": {"clip_id": clip}, "annotations": [{"result": result}]}]
    r = api.client.post("/api/v1/import/label-studio", headers=api.admin, json=tasks)
    expect_error(r, 422, "too_many_tags")
    assert count(db_url, Label) == 0


# --- Ids outside the 32-bit INTEGER range --------------------------------------------------

ID_ROUTES = [
    ("GET", "/api/v1/videos/{id}", "video_not_found"),
    ("DELETE", "/api/v1/videos/{id}", "video_not_found"),
    ("GET", "/api/v1/clips/{id}", "clip_not_found"),
    ("GET", "/api/v1/clips/{id}/media", "clip_not_found"),
    ("GET", "/api/v1/clips/{id}/thumbnail", "clip_not_found"),
    ("POST", "/api/v1/clips/{id}/review", "clip_not_found"),
    ("POST", "/api/v1/clips/{id}/labels", "clip_not_found"),
    ("GET", "/api/v1/jobs/{id}", "job_not_found"),
    ("POST", "/api/v1/models/{id}/promote", "model_not_found"),
]


@pytest.mark.parametrize(("method", "path", "missing"), ID_ROUTES)
def test_ids_out_of_range_are_422_and_unknown_ids_404(
    api: ApiHarness, method: str, path: str, missing: str
) -> None:
    body = {"none_apply": True} if path.endswith("/labels") else None
    for bad in [*TOO_BIG, "abc", "1.5"]:
        r = api.client.request(method, path.format(id=bad), headers=api.admin, json=body)
        expect_error(r, 422, "validation_error")
    r = api.client.request(method, path.format(id=2**31 - 1), headers=api.admin, json=body)
    expect_error(r, 404, missing)


@pytest.mark.parametrize("bad", TOO_BIG)
def test_ids_out_of_range_in_queries_and_bodies(api: ApiHarness, db_url: str, bad: int) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.get("/api/v1/clips", headers=api.admin, params={"video_id": bad})
    expect_error(r, 422, "validation_error")
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"clip_ids": [clip, bad]})
    expect_error(r, 422, "validation_error")
    tasks = [
        {
            "data": {"clip_id": bad},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["dog"]}}]}],
        }
    ]
    r = api.client.post("/api/v1/import/label-studio", headers=api.admin, json=tasks)
    expect_error(r, 422, "invalid_label_studio_export")
    with session_scope(db_url) as s:
        assert s.get(Clip, clip) is not None and s.get(Clip, clip).split == "pool"  # type: ignore[union-attr]
    assert count(db_url, Label) == 0


# --- Pagination ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/v1/videos", "/api/v1/clips"])
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "%%%",
        cursor_of(b"id:abc"),
        cursor_of(b"page:5"),
        cursor_of(b"\xff\xfe\x00"),
        cursor_of(f"id:{2**70}".encode()),
        cursor_of(f"id:{2**31}".encode()),
        cursor_of(b"id:-5"),
        cursor_of(b"id:1" + b"0" * 5000),
    ],
)
def test_tampered_cursors(api: ApiHarness, route: str, cursor: str) -> None:
    r = api.client.get(route, headers=api.admin, params={"cursor": cursor})
    expect_error(r, 422, "invalid_cursor")


@pytest.mark.parametrize("route", ["/api/v1/videos", "/api/v1/clips"])
@pytest.mark.parametrize("limit", ["0", "-1", "100000", str(2**70), "abc", "1e3"])
def test_out_of_range_limits(api: ApiHarness, route: str, limit: str) -> None:
    r = api.client.get(route, headers=api.admin, params={"limit": limit})
    expect_error(r, 422, "validation_error")


# --- Import paths (outside a root, ``..`` and file symlinks: test_api.py) -----------------


def test_import_paths_that_escape_or_break_resolution(api: ApiHarness, tmp_path: Path) -> None:
    roots = tmp_path / "imports"
    roots.mkdir()
    sibling = tmp_path / "imports-evil"  # shares the root's name as a string prefix
    sibling.mkdir()
    (sibling / "a.mp4").write_bytes((VIDEOS / "carphone_qcif_noaudio.mp4").read_bytes())
    os.symlink(sibling, roots / "dirlink")  # a directory symlink out of the root
    os.symlink(roots / "loop2", roots / "loop1")
    os.symlink(roots / "loop1", roots / "loop2")
    cases = [
        (str(sibling / "a.mp4"), 403, "path_not_allowed"),
        (str(roots / "dirlink" / "a.mp4"), 403, "path_not_allowed"),
        ("~/a.mp4", 403, "path_not_allowed"),
        ("imports/../imports-evil/a.mp4", 403, "path_not_allowed"),
        (f"{roots}/./dirlink/../../imports-evil/a.mp4", 403, "path_not_allowed"),
        ("/etc/passwd", 403, "path_not_allowed"),
        (str(roots / "a\x00.mp4"), 422, "invalid_path"),
        (str(roots / "loop1"), 422, "invalid_path"),
        (str(roots / ("a" * 5000)), 422, "invalid_path"),
        (str(roots), 404, "file_not_found"),
    ]
    for path, status, code in cases:
        r = api.client.post("/api/v1/videos/import", headers=api.admin, json={"path": path})
        expect_error(r, status, code)
    assert api.client.get("/api/v1/videos", headers=api.admin).json()["items"] == []


# --- Range on clip media --------------------------------------------------------------------

SIZE = 1000


@pytest.fixture
def media_clip(api: ApiHarness, db_url: str) -> int:
    """A clip whose preview is 1000 known bytes (the media pipeline is tested elsewhere)."""
    clip = add_clips(db_url, 1)[0]
    BlobStore(api.settings.blob_url).put_bytes("clips/hostile/preview.mp4", bytes(range(250)) * 4)
    with session_scope(db_url) as s:
        row = s.get(Clip, clip)
        assert row is not None
        row.preview_uri = "clips/hostile/preview.mp4"
    return clip


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",
        "bytes=-0",
        f"bytes={SIZE}-",
        "bytes=99999999999999999999999-",
        f"bytes={2**70}-{2**71}",
        "bytes=--5",
    ],
)
def test_unsatisfiable_ranges(api: ApiHarness, media_clip: int, header: str) -> None:
    r = api.client.get(
        f"/api/v1/clips/{media_clip}/media", headers={**api.annotator, "Range": header}
    )
    expect_error(r, 416, "range_not_satisfiable")


@pytest.mark.parametrize(
    ("header", "status", "first", "last"),
    [
        ("bytes=-99999999999999999999", 206, 0, SIZE - 1),
        ("bytes=990-99999999999999999999", 206, 990, SIZE - 1),
        ("bytes=" + "9" * 5000 + "-", 200, 0, SIZE - 1),  # unparseable: ignored
        ("bytes=" + "0-1," * 2000, 200, 0, SIZE - 1),  # multi-range: the whole file
        ("bytes=abc-def", 200, 0, SIZE - 1),
        ("furlongs=0-5", 200, 0, SIZE - 1),
        ("bytes=\x7f-", 200, 0, SIZE - 1),
    ],
)
def test_odd_ranges_are_served_or_ignored(
    api: ApiHarness, media_clip: int, header: str, status: int, first: int, last: int
) -> None:
    r = api.client.get(
        f"/api/v1/clips/{media_clip}/media", headers={**api.annotator, "Range": header}
    )
    assert r.status_code == status, r.text
    assert r.content == (bytes(range(250)) * 4)[first : last + 1]


def test_range_on_a_clip_without_media(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    r = api.client.get(
        f"/api/v1/clips/{clip}/media", headers={**api.annotator, "Range": "bytes=0-10"}
    )
    expect_error(r, 404, "media_not_found")


# --- Roles, queue lanes, skip reasons -------------------------------------------------------


def test_annotators_get_403_on_admin_routes(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    admin_only = [
        ("POST", TAGS, {"name": "cat"}),
        ("POST", "/api/v1/models/train", None),
        ("POST", "/api/v1/models/1/promote", None),
        ("POST", "/api/v1/holdout", {"fraction": 0.5}),
        ("POST", f"/api/v1/clips/{clip}/review", None),
        ("POST", "/api/v1/videos/import", {"path": "/etc/passwd"}),
        ("DELETE", "/api/v1/videos/1", None),
        ("POST", "/api/v1/import/label-studio", []),
    ]
    for method, path, body in admin_only:
        r = api.client.request(method, path, headers=api.annotator, json=body)
        expect_error(r, 403, "admin_required")
        r = api.client.request(method, path, json=body)
        expect_error(r, 401, "unauthorized")
    r = api.client.get(TAGS, headers={"Authorization": "Bearer \x00\x01"})
    expect_error(r, 401, "invalid_token")
    assert count(db_url, Tag) == 3


@pytest.mark.parametrize("queue", ["nope", "AL", "", "holdout;drop table clip"])
def test_unknown_queue_lane(api: ApiHarness, queue: str) -> None:
    r = api.client.get("/api/v1/queue/next", headers=api.annotator, params={"queue": queue})
    expect_error(r, 422, "validation_error")


def test_skip_reasons_and_lease_ids(api: ApiHarness, db_url: str) -> None:
    skip = "/api/v1/queue/{}/skip"
    r = api.client.post(skip.format("x"), headers=api.annotator, json={"reason": "a" * 501})
    expect_error(r, 422, "validation_error")
    r = api.client.post(skip.format("x"), headers=api.annotator, json={"reason": ["unclear"]})
    expect_error(r, 422, "validation_error")
    r = api.client.post(skip.format("x"), headers=api.annotator, json={"reason": "a\x00b"})
    expect_error(r, 422, "invalid_skip_reason")
    for lease in ["%00", "x" * 5000, "a%20b"]:
        r = api.client.post(skip.format(lease), headers=api.annotator, json={"reason": "unclear"})
        expect_error(r, 404, "lease_not_found")
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(
        labels_url(clip), headers=api.annotator, json={"tags": ["dog"], "lease_id": "a\x00"}
    )
    expect_error(r, 404, "lease_not_found")
    assert count(db_url, Label) == 0


def test_label_studio_annotators_pass_the_label_check(api: ApiHarness, db_url: str) -> None:
    """An imported annotator name is checked as a token's would be (once stored with a NUL
    on SQLite, a 500 for a lone surrogate, and 10,000 characters accepted)."""
    clip = add_clips(db_url, 1)[0]
    result = [{"type": "choices", "value": {"choices": ["dog"]}}]
    for who in ["eve\x00", "\x1b[31meve", "e" * 10_000]:
        annotation = {"completed_by": who, "result": result}
        tasks = [{"data": {"clip_id": clip}, "annotations": [annotation]}]
        r = api.client.post("/api/v1/import/label-studio", headers=api.admin, json=tasks)
        error = expect_error(r, 422, "invalid_annotator")
        assert error["errors"][0]["task"] == 0 and error["errors"][0]["code"] == "invalid_annotator"
    raw = (
        b'[{"data": {"clip_id": %d}, "annotations": [{"completed_by": "\\ud800", '
        b'"result": [{"type": "choices", "value": {"choices": ["dog"]}}]}]}]' % clip
    )
    headers = {**api.admin, "Content-Type": "application/json"}
    r = api.client.post("/api/v1/import/label-studio", headers=headers, content=raw)
    expect_error(r, 422, "invalid_annotator")
    assert count(db_url, Label) == 0
