"""Co-training pseudo-labels on SQLite and PostgreSQL: the 0005 migration, the repository,
GET /api/v1/models/{id}/pseudo-labels, and that nothing reading human labels sees them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.exc import IntegrityError

from tagloop.db import pseudo_labels as pseudo_repo
from tagloop.db.engine import get_engine, session_scope
from tagloop.db.migrate import downgrade_database, upgrade_database
from tagloop.db.models import MAX_ID, Base, Clip, ModelVersion, PseudoLabelRow
from tagloop.errors import InvalidInput, NotFound
from tagloop.training.cotrain import PseudoLabel
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips

pytestmark = pytest.mark.integration


def _add_version(db_url: str) -> int:
    with session_scope(db_url) as s:
        v = ModelVersion(status="ready", vocabulary=[], config={}, metrics={}, n_train=1)
        s.add(v)
        s.flush()
        return v.id


def _count(db_url: str) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count(PseudoLabelRow.id))) or 0)


def test_migration_0005_creates_and_drops_pseudo_label(db_url: str) -> None:
    upgrade_database(db_url, revision="0004")
    engine = get_engine(db_url)
    assert "pseudo_label" not in inspect(engine).get_table_names()
    upgrade_database(db_url)
    names = {c["name"] for c in inspect(engine).get_columns("pseudo_label")}
    assert names == {
        "id",
        "model_version_id",
        "clip_id",
        "tags",
        "negative_tags",
        "source",
        "confidence",
        "created_at",
    }
    cascades = {
        fk["referred_table"]: fk["options"].get("ondelete")
        for fk in inspect(engine).get_foreign_keys("pseudo_label")
    }
    assert {k: str(v).upper() for k, v in cascades.items()} == {
        "clip": "CASCADE",
        "model_version": "CASCADE",
    }
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    downgrade_database(db_url, revision="0004")
    assert "pseudo_label" not in inspect(engine).get_table_names()
    assert "label" in inspect(engine).get_table_names()
    upgrade_database(db_url)
    assert "pseudo_label" in inspect(engine).get_table_names()


def test_repository_stores_pages_counts_and_refuses_bad_rows(db_url: str) -> None:
    upgrade_database(db_url)
    clips = add_clips(db_url, 3)
    v = _add_version(db_url)
    other = _add_version(db_url)
    labels = [
        PseudoLabel(clip_id=c, tags=["zero"], source="visual", confidence=0.9 + i / 100)
        for i, c in enumerate(clips)
    ]
    with session_scope(db_url) as s:
        assert pseudo_repo.add_pseudo_labels(s, v, labels) == 3
        assert pseudo_repo.add_pseudo_labels(s, other, labels[:1]) == 1
        assert pseudo_repo.add_pseudo_labels(s, v, []) == 0
    with session_scope(db_url) as s:
        assert pseudo_repo.count_pseudo_labels(s, v) == 3
        assert pseudo_repo.count_pseudo_labels(s, other) == 1
        rows = pseudo_repo.pseudo_labels_of(s, v, limit=2)
        assert [r.clip_id for r in rows] == clips[:2]
        assert [r.clip_id for r in pseudo_repo.pseudo_labels_of(s, v, limit=2, offset=2)] == [
            clips[2]
        ]
        after = pseudo_repo.pseudo_labels_of(s, v, limit=5, after_id=rows[-1].id)
        assert [r.clip_id for r in after] == [clips[2]]
        assert rows[0].tags == ["zero"] and rows[0].negative_tags == []
        assert rows[0].source == "visual" and rows[0].confidence == pytest.approx(0.9)
    with pytest.raises(NotFound) as missing, session_scope(db_url) as s:
        pseudo_repo.add_pseudo_labels(s, MAX_ID, labels)
    assert missing.value.code == "model_not_found"
    for bad in (
        PseudoLabel(clip_id=clips[0], tags=[], source="audio", confidence=1.5),
        PseudoLabel(clip_id=clips[0], tags=[], source="audio", confidence=float("nan")),
        PseudoLabel(clip_id=clips[0], tags=[], source="", confidence=0.9),
    ):
        with pytest.raises(InvalidInput) as err, session_scope(db_url) as s:
            pseudo_repo.add_pseudo_labels(s, v, [labels[0], bad])
        assert err.value.code == "bad_pseudo_label"
    # One pseudo-label per (version, clip, teaching view).
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        pseudo_repo.add_pseudo_labels(s, v, labels[:1])
    assert _count(db_url) == 4


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url)
    for name, group in [("cat", None), ("dog", None), ("indoor", "scene"), ("outdoor", "scene")]:
        r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


def _seed(api: ApiHarness, db_url: str) -> tuple[list[int], int]:
    """clips[0]: a human label "cat" and pseudo-labels "dog" (visual) and "outdoor" (audio);
    clips[1]: only a pseudo-label; clips[2]: nothing."""
    clips = add_clips(db_url, 3)
    r = api.client.post(
        f"/api/v1/clips/{clips[0]}/labels", headers=api.annotator, json={"tags": ["cat"]}
    )
    assert r.status_code == 201, r.text
    v = _add_version(db_url)
    with session_scope(db_url) as s:
        pseudo_repo.add_pseudo_labels(
            s,
            v,
            [
                PseudoLabel(clip_id=clips[0], tags=["dog"], source="visual", confidence=0.97),
                PseudoLabel(
                    clip_id=clips[0],
                    tags=["outdoor"],
                    negative_tags=["cat"],
                    source="audio",
                    confidence=0.93,
                ),
                PseudoLabel(clip_id=clips[1], tags=["indoor"], source="audio", confidence=0.91),
            ],
        )
    return clips, v


def test_route_lists_pseudo_labels_as_pseudo(api: ApiHarness, db_url: str) -> None:
    clips, v = _seed(api, db_url)
    url = f"/api/v1/models/{v}/pseudo-labels"
    r = api.client.get(url, headers=api.annotator, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 3 and page["next_cursor"]
    assert [it["kind"] for it in page["items"]] == ["pseudo", "pseudo"]
    first = page["items"][0]
    assert first["clip_id"] == clips[0] and first["tags"] == ["dog"]
    assert first["source"] == "visual" and first["confidence"] == pytest.approx(0.97)
    assert first["model_version_id"] == v and first["negative_tags"] == []
    assert page["items"][1]["negative_tags"] == ["cat"]
    r = api.client.get(url, headers=api.admin, params={"limit": 2, "cursor": page["next_cursor"]})
    rest = r.json()
    assert [(it["clip_id"], it["tags"], it["kind"]) for it in rest["items"]] == [
        (clips[1], ["indoor"], "pseudo")
    ]
    assert rest["next_cursor"] is None and rest["total"] == 3

    empty = _add_version(db_url)
    r = api.client.get(f"/api/v1/models/{empty}/pseudo-labels", headers=api.annotator)
    assert r.json() == {"items": [], "next_cursor": None, "total": 0}
    r = api.client.get("/api/v1/models/999999/pseudo-labels", headers=api.annotator)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    for bad in ("0", str(MAX_ID + 1)):
        r = api.client.get(f"/api/v1/models/{bad}/pseudo-labels", headers=api.annotator)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = api.client.get(url, headers=api.annotator, params={"cursor": "nope"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"
    assert api.client.get(url).status_code == 401


def test_exports_and_clip_detail_never_carry_pseudo_labels(api: ApiHarness, db_url: str) -> None:
    clips, _ = _seed(api, db_url)
    r = api.client.get("/api/v1/export", params={"format": "jsonl"}, headers=api.admin)
    assert r.status_code == 200, r.text
    records = [json.loads(line) for line in r.text.splitlines()]
    # clips[1] has only a pseudo-label: it is not a labeled clip, so it is not exported.
    assert [rec["clip_id"] for rec in records] == [clips[0]]
    assert [lb["tags"] for lb in records[0]["labels"]] == [["cat"]]
    for tag in ("dog", "outdoor", "indoor", "pseudo", "visual"):
        assert tag not in r.text

    r = api.client.get("/api/v1/export", params={"format": "csv"}, headers=api.admin)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(int(row["clip_id"]), row["label_tags"]) for row in rows] == [(clips[0], "cat")]
    assert "dog" not in r.text and "pseudo" not in r.text

    r = api.client.get("/api/v1/export", params={"format": "label-studio"}, headers=api.admin)
    tasks = r.json()
    assert [t["data"]["clip_id"] for t in tasks] == [clips[0]]
    assert "dog" not in r.text and "outdoor" not in r.text

    detail = api.client.get(f"/api/v1/clips/{clips[0]}", headers=api.annotator).json()
    assert [lb["tags"] for lb in detail["labels"]] == [["cat"]]
    listed = api.client.get(
        "/api/v1/clips", headers=api.annotator, params={"labeled": "true"}
    ).json()
    assert [c["id"] for c in listed["items"]] == [clips[0]]


def test_deleting_a_clip_or_its_video_or_the_version_removes_its_pseudo_labels(
    api: ApiHarness, db_url: str
) -> None:
    clips, v = _seed(api, db_url)
    assert _count(db_url) == 3
    with session_scope(db_url) as s:
        s.execute(delete(Clip).where(Clip.id == clips[1]))
    assert _count(db_url) == 2
    r = api.client.get(f"/api/v1/models/{v}/pseudo-labels", headers=api.annotator)
    assert {it["clip_id"] for it in r.json()["items"]} == {clips[0]}

    with session_scope(db_url) as s:
        video_id = s.get(Clip, clips[0]).video_id  # type: ignore[union-attr]
    assert api.client.delete(f"/api/v1/videos/{video_id}", headers=api.admin).status_code == 204
    assert _count(db_url) == 0

    clips = add_clips(db_url, 1, sha="b")
    with session_scope(db_url) as s:
        pseudo_repo.add_pseudo_labels(
            s, v, [PseudoLabel(clip_id=clips[0], tags=["dog"], source="visual", confidence=0.95)]
        )
    with session_scope(db_url) as s:
        s.execute(delete(ModelVersion).where(ModelVersion.id == v))
    assert _count(db_url) == 0
