"""GET /stats, GET /export (JSONL, CSV, Label Studio) and the Label Studio import, on SQLite
and PostgreSQL, against data seeded through the repositories and the REST API."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagloop.db import queue as queue_repo
from tagloop.db import stats as stats_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Job, Label, ModelVersion, Prediction
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips
from tests.integration.test_queue import add_annotator, fill

pytestmark = pytest.mark.integration


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url)
    for name, group in [("cat", None), ("dog", None), ("indoor", "scene"), ("outdoor", "scene")]:
        r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


def _label(api: ApiHarness, clip_id: int, tags: list[str], seconds: float = 2.0) -> None:
    r = api.client.post(
        f"/api/v1/clips/{clip_id}/labels",
        headers=api.annotator,
        json={"tags": tags, "seconds_spent": seconds},
    )
    assert r.status_code == 201, r.text


def _add_version(
    db_url: str,
    *,
    n_train: int,
    score: float,
    status: str,
    holdout: dict[str, object] | None = None,
) -> int:
    metrics: dict[str, object] = {"score": score, "ap_per_tag": {"cat": 0.5}}
    if holdout is not None:
        metrics["holdout"] = holdout
    with session_scope(db_url) as s:
        v = ModelVersion(
            status=status,
            vocabulary=[],
            config={},
            metrics=metrics,
            n_train=n_train,
            artifact_uri="models/x",
        )
        s.add(v)
        s.flush()
        return v.id


def _predict(db_url: str, version_id: int, clip_id: int, top: list[dict[str, object]]) -> None:
    with session_scope(db_url) as s:
        s.add(
            Prediction(clip_id=clip_id, model_version_id=version_id, top_tags=top, uncertainty=0.4)
        )


def test_stats_counts_round_and_learning_curve(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 4)
    _label(api, clips[0], ["cat"])
    _label(api, clips[0], ["dog"])
    v1 = _add_version(db_url, n_train=2, score=0.4, status="retired")
    time.sleep(0.05)  # the next label must be strictly newer than the promoted version
    # Trained once the holdout had labels: its metrics carry evaluate_predictions' dict.
    holdout = {
        "score": 0.55,
        "n_clips": 12,
        "accuracy": {"scene": 0.5},
        "map": 0.6,
        "micro_f1": 0.5,
        "micro_f1_fitted": 0.58,
        "decision_threshold": 0.31,
        "group_threshold": 0.22,
    }
    v2 = _add_version(db_url, n_train=5, score=0.7, status="promoted", holdout=holdout)
    time.sleep(0.05)
    _label(api, clips[1], ["indoor"])
    with session_scope(db_url) as s:
        queue_repo.replace_queue(s, items=[(clips[2], "entropy", 0.9), (clips[3], "entropy", 0.5)])
        s.add(Job(kind="train", status="running", progress=0.25, message="epoch 2/8"))
        s.add(Job(kind="score", status="succeeded", progress=1.0))
    assert api.client.get("/api/v1/queue/next", headers=api.admin).status_code == 200

    r = api.client.get("/api/v1/stats", headers=api.annotator)
    assert r.status_code == 200, r.text
    body = r.json()
    counts = body["counts"]
    assert counts["videos"] == {"queued": 1, "processing": 0, "ready": 0, "failed": 0}
    # The second label of clip 0 by the same annotator replaced the first.
    assert (counts["clips"], counts["labeled_clips"], counts["labels"]) == (4, 2, 2)
    assert counts["queue"]["queued"] == 1 and counts["queue"]["leased"] == 1
    assert counts["tags"] == 4
    rnd = body["round"]
    assert (rnd["promoted_version_id"], rnd["n_train"], rnd["score"]) == (v2, 5, 0.7)
    assert rnd["labels_since_trained"] == 1
    assert [(j["kind"], j["progress"]) for j in rnd["jobs"]] == [("train", 0.25)]
    curve = body["learning_curve"]
    assert [(p["version_id"], p["n_labels"], p["score"]) for p in curve] == [
        (v1, 2, 0.4),
        (v2, 5, 0.7),
    ]
    assert [(p["holdout_score"], p["n_holdout"]) for p in curve] == [(None, None), (0.55, 12)]
    # micro-F1 at 0.5 and at the threshold fitted on the holdout; v1 has no holdout figures.
    assert [(p["micro_f1"], p["micro_f1_fitted"]) for p in curve] == [(None, None), (0.5, 0.58)]
    models = {v["id"]: v for v in api.client.get("/api/v1/models", headers=api.admin).json()}
    assert (models[v2]["decision_threshold"], models[v2]["micro_f1_fitted"]) == (0.31, 0.58)
    assert (models[v1]["decision_threshold"], models[v1]["micro_f1_fitted"]) == (None, None)
    assert (models[v2]["group_threshold"], models[v1]["group_threshold"]) == (0.22, None)
    assert counts["needs_review"] == 0
    assert counts["holdout"] == {"clips": 0, "labeled": 0, "queued": 0}
    assert body["caller"] == {"name": "ann", "role": "annotator"}
    assert api.client.get("/api/v1/stats").status_code == 401


def test_stats_of_an_empty_database(api: ApiHarness) -> None:
    body = api.client.get("/api/v1/stats", headers=api.admin).json()
    assert body["counts"]["clips"] == 0 and body["learning_curve"] == []
    assert body["counts"]["needs_review"] == 0 and body["counts"]["holdout"]["clips"] == 0
    assert body["round"]["promoted_version_id"] is None and body["round"]["jobs"] == []
    assert body["caller"]["role"] == "admin"


def _seed_export(api: ApiHarness, db_url: str) -> tuple[list[int], int]:
    clips = add_clips(db_url, 4)
    _label(api, clips[0], ["cat", "indoor"], seconds=3.0)
    v = _add_version(db_url, n_train=1, score=0.5, status="promoted")
    _predict(db_url, v, clips[0], [{"tag": "cat", "p": 0.8}])
    _predict(db_url, v, clips[2], [{"tag": "dog", "p": 0.3}, {"tag": "cat", "p": 0.2}])
    return clips, v


def test_export_jsonl_and_csv(api: ApiHarness, db_url: str) -> None:
    clips, v = _seed_export(api, db_url)
    r = api.client.get("/api/v1/export", params={"format": "jsonl"}, headers=api.annotator)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in r.text.splitlines()]
    # Clips 1 and 3 have neither labels nor predictions: not exported.
    assert [rec["clip_id"] for rec in records] == [clips[0], clips[2]]
    assert records[0]["labels"][0]["tags"] == ["cat", "indoor"]
    assert records[0]["labels"][0]["annotator"] == "ann"
    assert records[0]["video_filename"] == "a.mp4"
    assert records[1]["prediction"]["model_version"] == v
    assert records[1]["labels"] == []

    r = api.client.get("/api/v1/export", params={"format": "csv"}, headers=api.admin)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["clip_id"]) for row in rows] == [clips[0], clips[2]]
    assert rows[0]["label_tags"] == "cat|indoor" and rows[1]["predicted_tags"] == "dog:0.3|cat:0.2"

    r = api.client.get("/api/v1/export", params={"format": "xml"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def _skip(api: ApiHarness, headers: dict[str, str], reason: str | None) -> int:
    lease = api.client.get("/api/v1/queue/next", headers=headers).json()
    r = api.client.post(
        f"/api/v1/queue/{lease['lease_id']}/skip",
        headers=headers,
        json=None if reason is None else {"reason": reason},
    )
    assert r.status_code == 200, r.text
    return int(lease["clip"]["id"])


def test_export_carries_skips_split_and_parked(tmp_path: Path, db_url: str) -> None:
    api = make_api(tmp_path, db_url, skip_park_after=2)
    clips = add_clips(db_url, 4)
    bob = add_annotator(api, "bob")
    # clips[1]: skipped by two people (parked), one of them in their own words; never labeled
    # or predicted, and still exported. clips[3]: in the holdout, skipped without a reason.
    fill(db_url, [clips[1]])
    assert _skip(api, api.annotator, "unclear") == clips[1]
    fill(db_url, [clips[1]])
    assert _skip(api, bob, "two | things: at once") == clips[1]
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"clip_ids": [clips[3]]})
    assert r.status_code == 200, r.text
    lease = api.client.get("/api/v1/queue/next?queue=holdout", headers=bob).json()
    r = api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=bob)
    assert r.status_code == 200, r.text
    # clips[0]: a plain labeled clip with no skips; clips[2]: nothing, so not exported.
    r = api.client.post("/api/v1/tags", headers=api.admin, json={"name": "cat"})
    assert r.status_code == 201, r.text
    r = api.client.post(f"/api/v1/clips/{clips[0]}/labels", headers=bob, json={"tags": ["cat"]})
    assert r.status_code == 201, r.text

    r = api.client.get("/api/v1/export", params={"format": "jsonl"}, headers=api.annotator)
    records = {rec["clip_id"]: rec for rec in map(json.loads, r.text.splitlines())}
    assert sorted(records) == [clips[0], clips[1], clips[3]]
    parked = records[clips[1]]
    assert (parked["split"], parked["needs_review"]) == ("pool", True)
    assert parked["labels"] == [] and parked["prediction"] is None
    assert [(sk["annotator"], sk["reason"]) for sk in parked["skips"]] == [
        ("ann", "unclear"),
        ("bob", "two | things: at once"),
    ]
    assert all(sk["skipped_at"] for sk in parked["skips"])
    held = records[clips[3]]
    assert (held["split"], held["needs_review"]) == ("holdout", False)
    assert [(sk["annotator"], sk["reason"]) for sk in held["skips"]] == [("bob", None)]
    assert records[clips[0]]["skips"] == [] and records[clips[0]]["split"] == "pool"

    r = api.client.get("/api/v1/export", params={"format": "csv"}, headers=api.annotator)
    rows = {int(row["clip_id"]): row for row in csv.DictReader(io.StringIO(r.text))}
    assert (rows[clips[1]]["needs_review"], rows[clips[1]]["n_skips"]) == ("true", "2")
    assert json.loads(rows[clips[1]]["skips"])[1]["reason"] == "two | things: at once"
    assert rows[clips[3]]["split"] == "holdout" and rows[clips[0]]["skips"] == ""

    r = api.client.get("/api/v1/export", params={"format": "label-studio"}, headers=api.admin)
    tasks = {t["data"]["clip_id"]: t for t in r.json()}
    meta = tasks[clips[1]]["meta"]
    assert meta["needs_review"] is True and meta["split"] == "pool"
    assert [sk["annotator"] for sk in meta["skips"]] == ["ann", "bob"]
    assert tasks[clips[1]]["annotations"] == [] and tasks[clips[1]]["predictions"] == []

    # The same rows however small the batches: keyset pages over skip-only clips too.
    with session_scope(db_url) as s:
        one_by_one = list(stats_repo.iter_export_rows(s, batch_size=1))
    assert [row.clip_id for row in one_by_one] == [clips[0], clips[1], clips[3]]
    assert [len(row.skips) for row in one_by_one] == [0, 2, 1]


def test_label_studio_export_and_import_round_trip(api: ApiHarness, db_url: str) -> None:
    clips, v = _seed_export(api, db_url)
    r = api.client.get("/api/v1/export", params={"format": "label-studio"}, headers=api.admin)
    assert r.status_code == 200, r.text
    tasks = r.json()
    assert [t["data"]["clip_id"] for t in tasks] == [clips[0], clips[2]]
    assert tasks[0]["data"]["video"].endswith(f"/api/v1/clips/{clips[0]}/media")
    assert tasks[0]["annotations"][0]["result"][0]["value"]["choices"] == ["cat", "indoor"]
    assert tasks[1]["predictions"][0]["model_version"] == f"v{v}"

    # Someone labels clip 2 in Label Studio; the export comes back.
    tasks[1]["annotations"] = [
        {
            "completed_by": 3,
            "lead_time": 6.5,
            "result": [
                {
                    "from_name": "tags",
                    "to_name": "video",
                    "type": "choices",
                    "value": {"choices": ["dog", "outdoor"]},
                }
            ],
        }
    ]
    r = api.client.post("/api/v1/import/label-studio", headers=api.annotator, json=tasks)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    r = api.client.post("/api/v1/import/label-studio", headers=api.admin, json=tasks)
    assert r.status_code == 201, r.text
    # Clip 0's label came back as exported: stored already, not counted again.
    assert r.json() == {"labels": 2, "clips": 2, "replaced": 0, "unchanged": 1}
    labels = api.client.get(f"/api/v1/clips/{clips[2]}", headers=api.admin).json()["labels"]
    assert [(lb["tags"], lb["annotator"], lb["seconds_spent"]) for lb in labels] == [
        (["dog", "outdoor"], "label-studio:3", 6.5)
    ]


def _n_labels(db_url: str) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count(Label.id))) or 0)


def test_label_studio_predictions_check_tags_at_their_versions_threshold(
    api: ApiHarness, db_url: str
) -> None:
    clips, v = _seed_export(api, db_url)

    def predicted() -> list[str]:
        r = api.client.get("/api/v1/export", params={"format": "label-studio"}, headers=api.admin)
        (task,) = [t for t in r.json() if t["data"]["clip_id"] == clips[2]]
        choices: list[str] = task["predictions"][0]["result"][0]["value"]["choices"]
        return choices

    assert predicted() == ["dog"]  # at 0.5 neither tag is checked: the best one is
    with session_scope(db_url) as s:
        version = s.get(ModelVersion, v)
        assert version is not None
        version.metrics = {**version.metrics, "holdout": {"decision_threshold": 0.15}}
    assert predicted() == ["dog", "cat"]  # both reach the threshold fitted on the holdout


def test_label_studio_import_is_all_or_nothing(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 2)

    def task(clip_id: int, tags: list[str]) -> dict[str, object]:
        return {
            "data": {"clip_id": clip_id},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": tags}}]}],
        }

    url = "/api/v1/import/label-studio"
    r = api.client.post(
        url, headers=api.admin, json=[task(clips[0], ["cat"]), task(clips[1], ["yak", "emu"])]
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_tag" and r.json()["error"]["tags"] == [
        "yak",
        "emu",
    ]
    r = api.client.post(
        url, headers=api.admin, json=[task(clips[0], ["cat"]), task(999_999, ["dog"])]
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "clip_not_found"
    r = api.client.post(url, headers=api.admin, json=[task(clips[0], ["indoor", "outdoor"])])
    assert r.status_code == 422 and r.json()["error"]["code"] == "conflicting_tags"
    r = api.client.post(url, headers=api.admin, json={"tasks": []})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_label_studio_export"
    assert _n_labels(db_url) == 0
