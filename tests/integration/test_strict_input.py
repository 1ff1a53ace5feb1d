"""Issue 20's input findings through the real API on SQLite and PostgreSQL: lone surrogates,
Label Studio imports held to the label route's checks, one label per annotator and clip, no
NaN or Infinity in or out, bounded text, and holdout fractions that round to no clip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import func, select, update

from services.api.schemas import RequestBody
from tagloop.db import loop_state
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label, LabelHistory
from tagloop.pipeline import loop
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_hostile_input import expect_error, labels_url
from tests.integration.test_labels import add_clips

IMPORT = "/api/v1/import/label-studio"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url, import_roots=[tmp_path / "imports"], import_max_tasks=50)
    for name, group in [("dog", None), ("zero", "digit"), ("one", "digit")]:
        r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": name, "group": group})
        assert r.status_code == 201, r.text
    return h


def count(db_url: str, model: type[Label] | type[LabelHistory]) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def task(clip_id: int, tags: list[str], **annotation: Any) -> dict[str, Any]:
    result = [{"type": "choices", "value": {"choices": tags}}]
    return {"data": {"clip_id": clip_id}, "annotations": [{"result": result, **annotation}]}


def new_labels(api: ApiHarness) -> tuple[int, bool]:
    """What the loop's tick sees: labels since the last round, and whether a round is due."""
    with session_scope(api.settings.database_url) as s:
        state = loop_state.read_state(s, settings=api.settings)
    return state.new_labels, loop.train_due(state, loop.LoopPolicy.from_settings(api.settings))


# --- 2. Lone surrogates were 500s ----------------------------------------------------------


def test_a_lone_surrogate_import_path_is_422(api: ApiHarness) -> None:
    headers = {**api.admin, **JSON}
    r = api.client.post("/api/v1/videos/import", headers=headers, content=b'{"path": "\\ud800"}')
    expect_error(r, 422, "invalid_path")


def test_a_lone_surrogate_annotator_is_422(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    raw = json.dumps([task(clip, ["dog"], completed_by="@@")]).replace("@@", "\\ud800")
    r = api.client.post(IMPORT, headers={**api.admin, **JSON}, content=raw.encode())
    error = expect_error(r, 422, "invalid_annotator")
    assert error["errors"] == [
        {
            "task": 0,
            "annotation": 0,
            "clip_id": clip,
            "code": "invalid_annotator",
            "message": error["errors"][0]["message"],
        }
    ]
    assert count(db_url, Label) == 0


# --- 4. The Label Studio import is held to the label route's rules --------------------------


def test_an_import_is_capped_per_request(api: ApiHarness, db_url: str) -> None:
    """10,000 copies of one task went in, and the loop then trained on them by itself."""
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(IMPORT, headers=api.admin, json=[task(clip, ["dog"])] * 10_000)
    expect_error(r, 422, "too_many_tasks")
    r = api.client.post(IMPORT, headers=api.admin, json=[task(clip, ["dog"])] * 51)
    expect_error(r, 422, "too_many_tasks")
    assert count(db_url, Label) == 0


def test_an_import_reports_each_bad_task_and_stores_nothing(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 3)
    tasks = [
        task(clips[0], ["dog"], completed_by="ann"),
        task(clips[1], ["dog"], completed_by="bob", lead_time=1e308 * 10),
        task(clips[2], ["cat"], completed_by="ann"),
        task(clips[0], ["one"], completed_by="ann"),  # ann labels clip 0 twice in one file
        task(clips[1], ["zero", "one"], completed_by="x" * 129),
    ]
    raw = json.dumps(tasks)  # Python writes the infinite lead_time as a bare Infinity
    assert "Infinity" in raw
    r = api.client.post(IMPORT, headers={**api.admin, **JSON}, content=raw.encode())
    error = expect_error(r, 422, "invalid_seconds_spent")
    assert [(e["task"], e["code"]) for e in error["errors"]] == [
        (1, "invalid_seconds_spent"),
        (2, "unknown_tag"),
        (3, "duplicate_label"),
        (4, "invalid_annotator"),
    ]
    assert error["n_errors"] == 4
    assert count(db_url, Label) == 0


def test_one_label_per_annotator_and_clip(api: ApiHarness, db_url: str) -> None:
    """A second label by the same annotator replaces the first (kept in label_history); 25
    relabels of one clip are one new label for the loop, not a training round."""
    clip = add_clips(db_url, 1)[0]
    for i in range(25):
        tags = ["zero"] if i % 2 else ["one"]
        r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": tags})
        assert r.status_code == 201, r.text
    detail = api.client.get(f"/api/v1/clips/{clip}", headers=api.admin).json()
    assert [(lb["annotator"], lb["tags"]) for lb in detail["labels"]] == [("ann", ["one"])]
    assert count(db_url, LabelHistory) == 24
    assert new_labels(api) == (1, False)
    # Another annotator's label is theirs: both stand.
    r = api.client.post(labels_url(clip), headers=api.admin, json={"tags": ["zero"]})
    assert r.status_code == 201
    assert count(db_url, Label) == 2


def test_an_import_replaces_an_annotators_label_and_starts_no_round(
    api: ApiHarness, db_url: str
) -> None:
    clips = add_clips(db_url, 30)
    tasks = [task(c, ["dog"], completed_by="ls", lead_time=2.5) for c in clips[:10]]
    r = api.client.post(IMPORT, headers=api.admin, json=tasks)
    assert r.json() == {"labels": 10, "clips": 10, "replaced": 0, "unchanged": 0}
    # The same file again changes nothing; a changed label replaces the stored one.
    for _ in range(5):
        r = api.client.post(IMPORT, headers=api.admin, json=tasks)
        assert r.json() == {"labels": 10, "clips": 10, "replaced": 0, "unchanged": 10}
    tasks[0] = task(clips[0], ["zero"], completed_by="ls", lead_time=2.5)
    r = api.client.post(IMPORT, headers=api.admin, json=tasks)
    assert r.json() == {"labels": 10, "clips": 10, "replaced": 1, "unchanged": 9}
    assert (count(db_url, Label), count(db_url, LabelHistory)) == (10, 1)
    assert new_labels(api) == (10, False)  # below retrain_min_labels (20): no round
    # The loop's own rule still holds: 20 labels on different clips make a round due.
    more = [task(c, ["dog"], completed_by="ls") for c in clips[10:]]
    assert api.client.post(IMPORT, headers=api.admin, json=more).status_code == 201
    assert new_labels(api) == (30, True)


# --- 5. No NaN or Infinity in, none out -----------------------------------------------------


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"])
def test_non_finite_seconds_spent_is_refused(api: ApiHarness, db_url: str, value: str) -> None:
    clip = add_clips(db_url, 1)[0]
    raw = f'{{"tags": ["dog"], "seconds_spent": {value}}}'.encode()
    r = api.client.post(labels_url(clip), headers={**api.annotator, **JSON}, content=raw)
    expect_error(r, 422, "validation_error")
    raw = json.dumps([task(clip, ["dog"], lead_time="@@")]).replace('"@@"', value).encode()
    r = api.client.post(IMPORT, headers={**api.admin, **JSON}, content=raw)
    expect_error(r, 422, "invalid_seconds_spent")
    assert count(db_url, Label) == 0


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e999"])
def test_non_finite_holdout_fraction_is_refused(api: ApiHarness, value: str) -> None:
    raw = f'{{"fraction": {value}}}'.encode()
    r = api.client.post("/api/v1/holdout", headers={**api.admin, **JSON}, content=raw)
    expect_error(r, 422, "validation_error")


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """The app's API routes, through the routers it includes."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def test_every_request_body_refuses_nan_and_infinity(api: ApiHarness) -> None:
    """Every body model a route reads derives from RequestBody (allow_inf_nan=False)."""
    app: Any = api.client.app
    bodies = set()
    for route in api_routes(app.routes):
        for param in route.dependant.body_params:
            model = param.field_info.annotation
            models = [m for m in getattr(model, "__args__", (model,)) if isinstance(m, type)]
            bodies |= {m for m in models if issubclass(m, BaseModel)}
    assert len(bodies) >= 5, bodies
    assert all(issubclass(m, RequestBody) for m in bodies), bodies
    assert all(m.model_config.get("allow_inf_nan") is False for m in bodies)


def test_exports_stay_strict_json_with_legacy_infinite_values(api: ApiHarness, db_url: str) -> None:
    """A label stored with Infinity before the checks (the migration nulls them; this row
    is written behind its back) still exports as strict JSON."""
    clip = add_clips(db_url, 1)[0]
    r = api.client.post(labels_url(clip), headers=api.annotator, json={"tags": ["dog"]})
    assert r.status_code == 201
    with session_scope(db_url) as s:
        s.execute(update(Label).values(seconds_spent=float("inf")))

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    for fmt in ("jsonl", "label-studio"):
        r = api.client.get("/api/v1/export", params={"format": fmt}, headers=api.admin)
        assert r.status_code == 200
        text = r.text if fmt == "label-studio" else r.text.splitlines()[0]
        parsed = json.loads(text, parse_constant=refuse)
        record = parsed[0]["annotations"][0] if fmt == "label-studio" else parsed["labels"][0]
        assert record["lead_time" if fmt == "label-studio" else "seconds_spent"] is None


# --- 6. Bounded text ------------------------------------------------------------------------


def test_tag_descriptions_are_bounded(api: ApiHarness) -> None:
    limit = tag_repo.MAX_DESCRIPTION
    r = api.client.post(
        "/api/v1/tags", headers=api.admin, json={"name": "cat", "description": "d" * (limit + 1)}
    )
    expect_error(r, 422, "invalid_tag_description")
    r = api.client.post(
        "/api/v1/tags", headers=api.admin, json={"name": "cat", "description": "d" * limit}
    )
    assert r.status_code == 201
    # 20 MB is past the request body limit: refused before it is read.
    api.settings.request_max_bytes = 1024**2
    body = json.dumps({"name": "yak", "description": "d" * 20 * 1024**2}).encode()
    r = api.client.post("/api/v1/tags", headers={**api.admin, **JSON}, content=body)
    expect_error(r, 413, "request_too_large")
    names = [t["name"] for t in api.client.get("/api/v1/tags", headers=api.admin).json()["items"]]
    assert "yak" not in names


# --- 7. Holdout fractions that round to no clip ---------------------------------------------


def test_holdout_fractions_that_round_to_no_clip_are_refused(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 4)
    with session_scope(db_url) as s:
        s.execute(update(Clip).where(Clip.id.in_(clips)).values(status="ready"))
    for fraction in [1e-300, 1e-4, 0.1]:  # 0.1 of 4 clips is 0.4 clip
        r = api.client.post("/api/v1/holdout", headers=api.admin, json={"fraction": fraction})
        expect_error(r, 422, "holdout_fraction_too_small")
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"fraction": 0.25})
    assert r.status_code == 200 and r.json()["marked"] == 1
