"""A real vocabulary on SQLite and PostgreSQL (issue 22): 10,000 tags imported in one request,
idempotently and all or nothing; tag routes paginated, searched and gzip-compressed; model
lists that do not grow with the vocabulary; suggestions only of tags the model was trained
on."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, ModelVersion, Prediction, Tag
from tagloop.storage import BlobStore
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips
from tests.integration.test_queue import fill

TAGS = "/api/v1/tags"
IMPORT = "/api/v1/tags/import"
EXPORT = "/api/v1/tags/export"
CSV = {"Content-Type": "text/csv"}
N_TAGS = 10_000


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    return make_api(tmp_path, db_url)


def taxonomy_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "group", "parent", "description"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def ten_thousand() -> list[dict[str, str]]:
    """tag_0000 .. tag_9999: every tag but the first ten under tag_<i // 10> (a tree ten
    deep), the first ten under ``root``, named last (a parent may come after its children);
    every hundredth in one of ten exclusive groups; descriptions with commas and quotes."""
    rows = [
        {
            "name": f"tag_{i:04d}",
            "group": f"g{i // 1000}" if i % 100 == 0 else "",
            "parent": f"tag_{i // 10:04d}" if i >= 10 else "root",
            "description": f'tag {i}, "number" {i}',
        }
        for i in range(N_TAGS - 1)
    ]
    return [*rows, {"name": "root", "group": "", "parent": "", "description": "the top"}]


def count_tags(h: ApiHarness) -> int:
    with session_scope(h.settings.database_url) as s:
        return int(s.scalar(select(func.count(Tag.id))) or 0)


def all_pages(h: ApiHarness, *, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = h.client.get(
            TAGS, headers=h.annotator, params={**params, "limit": limit, "cursor": cursor}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_ten_thousand_tags_import_in_one_request_and_again_changes_nothing(
    api: ApiHarness, db_url: str
) -> None:
    rows = ten_thousand()
    body = taxonomy_csv(rows)
    started = time.perf_counter()
    r = api.client.post(IMPORT, headers={**api.admin, **CSV}, content=body)
    seconds = time.perf_counter() - started
    where = db_url.split(":")[0]
    print(f"\nimport of {N_TAGS} tags ({len(body)} bytes of CSV, {where}): {seconds:.2f} s")
    assert r.status_code == 200, r.text[:2000]
    assert r.json() == {"rows": N_TAGS, "created": N_TAGS, "updated": 0, "unchanged": 0}
    assert count_tags(api) == N_TAGS

    # Stored in file order (the model's columns), with groups and the hierarchy.
    listed = all_pages(api, limit=5000)
    assert [t["name"] for t in listed] == [r["name"] for r in rows]
    by_name = {t["name"]: t for t in listed}
    assert by_name["tag_0123"]["parent"] == "tag_0012" and by_name["tag_0005"]["parent"] == "root"
    assert by_name["tag_0300"]["group"] == "g0" and by_name["tag_0301"]["group"] is None
    assert by_name["root"]["parent"] is None
    assert by_name["tag_0042"]["description"] == 'tag 42, "number" 42'

    # The export is the file: CSV and JSON agree, and importing either back changes nothing.
    exported = api.client.get(EXPORT, headers=api.annotator, params={"format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert list(csv.DictReader(io.StringIO(exported.text))) == rows
    as_json = api.client.get(EXPORT, headers=api.annotator, params={"format": "json"}).json()
    assert [{k: v or "" for k, v in t.items()} for t in as_json] == rows
    again = api.client.post(IMPORT, headers={**api.admin, **CSV}, content=exported.content)
    assert again.json() == {"rows": N_TAGS, "created": 0, "updated": 0, "unchanged": N_TAGS}
    again = api.client.post(
        IMPORT, headers=api.admin, params={"format": "json"}, content=json.dumps(as_json)
    )
    assert again.json() == {"rows": N_TAGS, "created": 0, "updated": 0, "unchanged": N_TAGS}
    after = api.client.get(EXPORT, headers=api.annotator, params={"format": "csv"})
    assert after.content == exported.content and count_tags(api) == N_TAGS

    # Past the vocabulary's cap the whole import is refused.
    more = taxonomy_csv([{"name": f"extra_{i}"} for i in range(3)])
    capped = make_api(api.settings.data_dir.parent / "capped", db_url, max_tags=N_TAGS + 2)
    r = capped.client.post(IMPORT, headers={**capped.admin, **CSV}, content=more)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "too_many_tags_in_vocabulary"
    assert count_tags(api) == N_TAGS


def test_import_reports_every_bad_row_and_stores_nothing(api: ApiHarness) -> None:
    r = api.client.post(TAGS, headers=api.admin, json={"name": "dog", "group": "animal"})
    assert r.status_code == 201
    rows = [
        {"name": "cat", "group": "animal", "parent": "", "description": "fine"},  # 1
        {"name": "bad\x07name", "group": "", "parent": "", "description": ""},  # 2
        {"name": "CAT", "group": "animal", "parent": "", "description": ""},  # 3
        {"name": "puppy", "group": "", "parent": "wolf", "description": ""},  # 4
        {"name": "self", "group": "", "parent": "SELF", "description": ""},  # 5
        {"name": "a", "group": "", "parent": "b", "description": ""},  # 6
        {"name": "b", "group": "", "parent": "a", "description": ""},  # 7
        {"name": "Dog", "group": "pets", "parent": "", "description": ""},  # 8
        {"name": "long", "group": "", "parent": "", "description": "d" * 1001},  # 9
        {"name": "kitten", "group": "", "parent": "cat", "description": ""},  # 10: fine
    ]
    r = api.client.post(IMPORT, headers={**api.admin, **CSV}, content=taxonomy_csv(rows))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    got = [(e["row"], e["name"], e["code"]) for e in error["errors"]]
    assert got == [
        (2, "bad\x07name", "invalid_tag_name"),
        (3, "CAT", "duplicate_tag"),
        (4, "puppy", "unknown_parent"),
        (5, "self", "invalid_parent"),
        (6, "a", "parent_cycle"),
        (7, "b", "parent_cycle"),
        (8, "Dog", "tag_group_conflict"),
        (9, "long", "invalid_tag_description"),
    ]
    assert error["n_errors"] == 8 and error["code"] == "invalid_tag_name"
    assert "8 of 10 rows cannot be imported, so none was" in error["message"]
    assert count_tags(api) == 1

    # JSON: rows that are not objects or carry other fields are bad rows too.
    items: list[Any] = [{"name": "cat"}, "dog", {"name": "x", "colour": "red"}, {"name": 5}]
    r = api.client.post(IMPORT, headers=api.admin, json=items)
    assert r.status_code == 422
    assert [(e["row"], e["code"]) for e in r.json()["error"]["errors"]] == [
        (2, "invalid_row"),
        (3, "invalid_row"),
        (4, "invalid_row"),
    ]
    # Whole-file problems: no name column, not JSON, another format.
    for content, headers, code in [
        (b"title,group\ncat,\n", CSV, "invalid_taxonomy"),
        (b"{not json", {"Content-Type": "application/json"}, "invalid_taxonomy"),
        (b"cat", {"Content-Type": "text/plain"}, "unsupported_format"),
    ]:
        r = api.client.post(IMPORT, headers={**api.admin, **headers}, content=content)
        assert (r.status_code, r.json()["error"]["code"]) == (422, code)
    assert count_tags(api) == 1


def test_import_updates_descriptions_and_parents_and_is_admin_only(api: ApiHarness) -> None:
    first = [
        {"name": "animal", "description": "living"},
        {"name": "dog", "group": "species", "parent": "animal", "description": "a dog"},
        {"name": "cat", "group": "species", "parent": "animal", "description": "a cat"},
    ]
    r = api.client.post(IMPORT, headers=api.admin, json=first)
    assert r.json() == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0}
    # dog: a new description; cat: no parent any more; animal: the fields it leaves out stay.
    second = [
        {"name": "Dog", "group": "species", "parent": "animal", "description": "a good dog"},
        {"name": "cat", "parent": None},
        {"name": "animal"},
        {"name": "plant", "parent": "animal"},
    ]
    r = api.client.post(IMPORT, headers=api.admin, json=second)
    assert r.json() == {"rows": 4, "created": 1, "updated": 2, "unchanged": 1}
    tags = {t["name"]: t for t in api.client.get(TAGS, headers=api.admin).json()["items"]}
    assert set(tags) == {"animal", "dog", "cat", "plant"}  # "Dog" is the stored dog
    assert (tags["dog"]["description"], tags["dog"]["parent"]) == ("a good dog", "animal")
    assert (tags["cat"]["group"], tags["cat"]["parent"]) == ("species", None)
    assert tags["cat"]["description"] == "a cat" and tags["animal"]["description"] == "living"

    body = taxonomy_csv([{"name": "x"}])
    r = api.client.post(IMPORT, headers={**api.annotator, **CSV}, content=body)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "admin_required")
    assert api.client.post(IMPORT, headers=CSV, content=body).status_code == 401
    # The request gate bounds an import like any body, before it is read.
    small = make_api(
        api.settings.data_dir.parent / "small", api.settings.database_url, request_max_bytes=1024
    )
    big = taxonomy_csv([{"name": f"t{i}"} for i in range(500)])
    r = small.client.post(IMPORT, headers={**small.admin, **CSV}, content=big)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")


def test_tags_page_by_cursor_and_search_exact_then_prefix_then_substring(api: ApiHarness) -> None:
    names = [f"tag_{i:04d}" for i in range(1200)]
    extra = ["xtag_0999", "Tag_0999 Extra", "tag_09990", "tagx0999", "TAG_0999_b"]
    rows = [{"name": n} for n in names + extra]
    r = api.client.post(IMPORT, headers=api.admin, json=rows)
    assert r.status_code == 200, r.text

    # Pages of 500 cover every tag once, in creation order; ?limit is honoured.
    listed = all_pages(api, limit=500)
    assert [t["name"] for t in listed] == names + extra
    assert len(api.client.get(TAGS, headers=api.annotator).json()["items"]) == 1000  # default
    r = api.client.get(TAGS, headers=api.annotator, params={"limit": 5001})
    assert r.status_code == 422

    # The exact name first (any case), then names starting with it (shorter first), then
    # names holding it; "_" is a plain character, so tagx0999 does not match.
    expected = ["tag_0999", "tag_09990", "TAG_0999_b", "Tag_0999 Extra", "xtag_0999"]
    for q in ("tag_0999", "TAG_0999", "  tag_0999 "):
        body = api.client.get(TAGS, headers=api.annotator, params={"q": q}).json()
        assert [t["name"] for t in body["items"]] == expected and body["next_cursor"] is None
    # A search's pages, one tag at a time, give the same order.
    assert [t["name"] for t in all_pages(api, limit=1, q="tag_0999")] == expected
    # A prefix: the 100 tags tag_01xx start with it, none is exact; shorter names first.
    found = all_pages(api, limit=30, q="tag_01")
    assert [t["name"] for t in found] == [f"tag_{i:04d}" for i in range(100, 200)]
    assert api.client.get(TAGS, headers=api.annotator, params={"q": "zzz"}).json() == {
        "items": [],
        "next_cursor": None,
    }
    # A search's cursor is not a listing's, and a tampered one is a clear 422.
    first = api.client.get(TAGS, headers=api.annotator, params={"q": "tag_01", "limit": 5})
    cursor = first.json()["next_cursor"]
    for params in ({"cursor": cursor}, {"q": "tag", "cursor": "bm9wZQ=="}):
        r = api.client.get(TAGS, headers=api.annotator, params=params)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_cursor")
    # Timing for the record (no assertion): 100 searches of a 1,205-tag vocabulary.
    started = time.perf_counter()
    for i in range(100):
        api.client.get(TAGS, headers=api.annotator, params={"q": f"tag_{i:04d}", "limit": 20})
    print(f"\n100 tag searches: {(time.perf_counter() - started) * 10:.1f} ms each")


def test_large_answers_are_gzipped_but_not_media_or_ranges(api: ApiHarness, db_url: str) -> None:
    api.client.post(IMPORT, headers=api.admin, json=[{"name": f"tag_{i}"} for i in range(1000)])
    plain = api.client.get(TAGS, headers={**api.annotator, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    # The raw bytes, before httpx decodes them.
    gz = {**api.annotator, "Accept-Encoding": "gzip"}
    with api.client.stream("GET", TAGS, headers=gz) as zipped:
        compressed = b"".join(zipped.iter_raw())
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
    assert json.loads(gzip.decompress(compressed)) == plain.json()
    assert len(compressed) * 5 < len(plain.content)
    print(f"\nGET /tags, 1,000 tags: {len(plain.content)} bytes, gzip {len(compressed)}")
    # Small answers go as they are.
    small = api.client.get("/api/v1/me", headers={**api.annotator, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers

    # A clip's media: never compressed, and a Range answer's bytes are the stored ones.
    (clip_id,) = add_clips(db_url, 1)
    media = bytes(range(256)) * 64
    BlobStore(api.settings.blob_url).put_bytes("previews/x.mp4", media)
    with session_scope(db_url) as s:
        s.execute(update(Clip).where(Clip.id == clip_id).values(preview_uri="previews/x.mp4"))
    full = api.client.get(f"/api/v1/clips/{clip_id}/media", headers=gz)
    assert full.status_code == 200 and "content-encoding" not in full.headers
    assert full.content == media
    part = api.client.get(
        f"/api/v1/clips/{clip_id}/media", headers={**gz, "Range": "bytes=100-4099"}
    )
    assert part.status_code == 206 and "content-encoding" not in part.headers
    assert part.headers["content-length"] == "4000" and part.content == media[100:4100]
    # The gate's refusals are still plain JSON.
    r = api.client.get(TAGS, headers={"Accept-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")


def seed_version(db_url: str, *, vocabulary: list[str], metrics: dict[str, Any]) -> int:
    with session_scope(db_url) as s:
        v = ModelVersion(
            status="promoted",
            vocabulary=[{"name": n, "group": None} for n in vocabulary],
            config={"kind": "probe"},
            metrics=metrics,
            n_train=30,
        )
        s.add(v)
        s.flush()
        return v.id


def test_model_list_does_not_grow_with_the_vocabulary(api: ApiHarness, db_url: str) -> None:
    vocab = [f"tag_{i:04d}" for i in range(N_TAGS)]
    per_tag = {t: 0 for t in vocab}
    metrics = {
        "score": 0.5,
        "ap_per_tag": dict.fromkeys(vocab),
        "positives": per_tag,
        "train_positives": {**per_tag, "tag_0001": 3},
        "holdout": {"score": 0.4, "ap_per_tag": dict.fromkeys(vocab), "positives": per_tag},
        "fusion_weights": [],
    }
    ids = [seed_version(db_url, vocabulary=vocab, metrics=metrics) for _ in range(3)]
    r = api.client.get("/api/v1/models", headers=api.annotator)
    assert r.status_code == 200
    print(f"\nGET /models, 3 versions of {N_TAGS} tags: {len(r.content)} bytes")
    assert len(r.content) < 3000
    for v in r.json():
        assert v["n_tags"] == N_TAGS and "vocabulary" not in v
        assert v["metrics"] == {"score": 0.5, "holdout": {"score": 0.4}, "fusion_weights": []}
    one = api.client.get(f"/api/v1/models/{ids[1]}", headers=api.annotator).json()
    assert len(one["vocabulary"]) == N_TAGS and one["n_tags"] == N_TAGS
    assert one["metrics"]["train_positives"]["tag_0001"] == 3
    assert len(one["metrics"]["holdout"]["ap_per_tag"]) == N_TAGS
    r = api.client.get("/api/v1/models/999999", headers=api.annotator)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")


def test_queue_never_suggests_a_tag_the_model_was_not_trained_on(
    api: ApiHarness, db_url: str
) -> None:
    rows = [
        {"name": "cat"},
        {"name": "indoor", "group": "scene"},
        {"name": "outdoor", "group": "scene"},
    ]
    rows += [{"name": f"tag_{i}"} for i in range(5)]
    assert api.client.post(IMPORT, headers=api.admin, json=rows).status_code == 200
    names = [r["name"] for r in rows]
    trained = {n: 0 for n in names} | {"cat": 4, "indoor": 2}
    version = seed_version(db_url, vocabulary=names, metrics={"train_positives": trained})
    (clip_id,) = add_clips(db_url, 1)
    # After a round on few labels every never-labeled tag scores about 0.5: those came first.
    top = [{"tag": f"tag_{i}", "p": 0.5} for i in range(3)]
    top += [{"tag": "indoor", "p": 0.45, "p_none": 0.1}, {"tag": "cat", "p": 0.3}]
    with session_scope(db_url) as s:
        s.add(Prediction(clip_id=clip_id, model_version_id=version, top_tags=top, uncertainty=0.5))
    fill(db_url, [clip_id])
    body = api.client.get("/api/v1/queue/next", headers=api.annotator).json()
    assert body["suggestions"] == [
        {"tag": "indoor", "p": 0.45, "p_none": 0.1, "group": "scene"},
        {"tag": "cat", "p": 0.3, "group": None},
    ]
    # A version that did not record its training positives (older rounds) suggests them all.
    older = seed_version(db_url, vocabulary=names, metrics={})
    (other,) = add_clips(db_url, 1, sha="b")
    with session_scope(db_url) as s:
        s.add(Prediction(clip_id=other, model_version_id=older, top_tags=top, uncertainty=0.5))
    fill(db_url, [other])
    body = api.client.get("/api/v1/queue/next", headers=api.admin).json()
    assert [s["tag"] for s in body["suggestions"]] == [t["tag"] for t in top]


def test_a_single_tag_may_name_its_parent(api: ApiHarness) -> None:
    assert api.client.post(TAGS, headers=api.admin, json={"name": "Animal"}).status_code == 201
    r = api.client.post(TAGS, headers=api.admin, json={"name": "dog", "parent": " ANIMAL "})
    assert r.status_code == 201 and r.json()["parent"] == "Animal"
    r = api.client.post(TAGS, headers=api.admin, json={"name": "cat", "parent": ""})
    assert r.status_code == 201 and r.json()["parent"] is None
    r = api.client.post(TAGS, headers=api.admin, json={"name": "owl", "parent": "bird"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_parent")
    listed = {
        t["name"]: t["parent"] for t in api.client.get(TAGS, headers=api.admin).json()["items"]
    }
    assert listed == {"Animal": None, "dog": "Animal", "cat": None}
