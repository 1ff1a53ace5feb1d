"""Parked clips and the holdout made visible, on SQLite and PostgreSQL: the clip list's
``needs_review`` and ``split`` filters, the admin's ``POST /clips/{id}/review`` that un-parks a
clip, and the counts ``/stats`` reports for both. Clips are parked by real skips through the
API, the holdout is marked through ``POST /api/v1/holdout``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip
from tagloop.pipeline.scoring import refill_queue
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.test_labels import add_clips
from tests.integration.test_queue import add_annotator, fill

pytestmark = pytest.mark.integration

CLIPS = "/api/v1/clips"
NEXT = "/api/v1/queue/next"
PARK_AFTER = 2


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url, skip_park_after=PARK_AFTER)
    r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": "dog"})
    assert r.status_code == 201, r.text
    return h


def listed(api: ApiHarness, **params: Any) -> list[int]:
    r = api.client.get(CLIPS, headers=api.annotator, params=params)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


def skip_next(
    api: ApiHarness, headers: dict[str, str], *, queue: str = "al", reason: str | None = None
) -> dict[str, Any]:
    """Lease the next clip of ``queue`` as ``headers`` and skip it; the skip's answer."""
    r = api.client.get(NEXT, headers=headers, params={"queue": queue})
    assert r.status_code == 200, r.text
    lease = r.json()
    body = {"reason": reason} if reason is not None else None
    r = api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=headers, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert out["clip_id"] == lease["clip"]["id"]
    return out


def park(api: ApiHarness, db_url: str, clip_id: int) -> None:
    """Skips by ``PARK_AFTER`` different annotators park the clip."""
    answers = []
    for i in range(PARK_AFTER):
        fill(db_url, [clip_id])
        answers.append(skip_next(api, add_annotator(api, f"skipper{clip_id}_{i}")))
    assert [a["needs_review"] for a in answers] == [False] * (PARK_AFTER - 1) + [True]


def counts(api: ApiHarness) -> dict[str, Any]:
    r = api.client.get("/api/v1/stats", headers=api.annotator)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["counts"]
    return out


def test_parked_clips_are_listed_counted_and_unparked_by_admins(
    api: ApiHarness, db_url: str
) -> None:
    clips = add_clips(db_url, 4)
    assert listed(api, needs_review=True) == [] and counts(api)["needs_review"] == 0
    park(api, db_url, clips[1])
    park(api, db_url, clips[3])

    assert listed(api, needs_review=True) == [clips[1], clips[3]]
    assert listed(api, needs_review=False) == [clips[0], clips[2]]
    assert listed(api, needs_review=True, limit=1) == [clips[1]]  # pages like every list
    detail = api.client.get(f"{CLIPS}/{clips[1]}", headers=api.admin).json()
    assert detail["needs_review"] is True and detail["split"] == "pool"
    assert counts(api)["needs_review"] == 2

    url = f"{CLIPS}/{clips[1]}/review"
    r = api.client.post(url, headers=api.annotator)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert api.client.post(url).status_code == 401
    assert listed(api, needs_review=True) == [clips[1], clips[3]]

    r = api.client.post(url, headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == clips[1] and r.json()["needs_review"] is False
    assert listed(api, needs_review=True) == [clips[3]]
    assert counts(api)["needs_review"] == 1
    # Reviewing a clip that is not parked changes nothing and is not an error.
    r = api.client.post(f"{CLIPS}/{clips[0]}/review", headers=api.admin)
    assert r.status_code == 200 and r.json()["needs_review"] is False
    assert listed(api, needs_review=True) == [clips[3]]


def test_review_of_unknown_or_impossible_ids(api: ApiHarness) -> None:
    r = api.client.post(f"{CLIPS}/999999/review", headers=api.admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "clip_not_found"
    for bad in ("2147483648", "9223372036854775808", "99999999999999999999999", "0", "-1", "x"):
        r = api.client.post(f"{CLIPS}/{bad}/review", headers=api.admin)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    # The largest id an INTEGER key holds is a valid id that no clip has.
    r = api.client.post(f"{CLIPS}/2147483647/review", headers=api.admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "clip_not_found"
    r = api.client.get(f"{CLIPS}/9223372036854775808", headers=api.admin)
    assert r.status_code == 422
    r = api.client.get(CLIPS, headers=api.admin, params={"video_id": 2**31})
    assert r.status_code == 422


def test_split_filter_and_holdout_counts(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 5)
    assert counts(api)["holdout"] == {"clips": 0, "labeled": 0, "queued": 0}
    r = api.client.post(
        "/api/v1/holdout", headers=api.admin, json={"clip_ids": [clips[1], clips[4]]}
    )
    assert r.status_code == 200 and r.json()["marked"] == 2, r.text

    assert listed(api, split="holdout") == [clips[1], clips[4]]
    assert listed(api, split="pool") == [clips[0], clips[2], clips[3]]
    assert listed(api, split="holdout", labeled=False) == [clips[1], clips[4]]
    r = api.client.get(CLIPS, headers=api.admin, params={"split": "train"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert counts(api)["holdout"] == {"clips": 2, "labeled": 0, "queued": 2}

    # Labeling one holdout clip through its own queue moves it from queued to labeled.
    lease = api.client.get(NEXT, headers=api.annotator, params={"queue": "holdout"}).json()
    assert lease["clip"]["split"] == "holdout"
    r = api.client.post(
        f"{CLIPS}/{lease['clip']['id']}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "lease_id": lease["lease_id"]},
    )
    assert r.status_code == 201, r.text
    assert counts(api)["holdout"] == {"clips": 2, "labeled": 1, "queued": 1}
    assert listed(api, split="holdout", labeled=True) == [lease["clip"]["id"]]


def test_an_unparked_holdout_clip_returns_to_its_queue(api: ApiHarness, db_url: str) -> None:
    (clip,) = add_clips(db_url, 1)
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"clip_ids": [clip]})
    assert r.status_code == 200, r.text
    skippers = [add_annotator(api, f"h{i}") for i in range(PARK_AFTER)]
    answers = []
    # Every refill gives the holdout lane back its clips whose skip cool-down is over.
    no_cooldown = api.settings.model_copy(update={"skip_cooldown_seconds": 0.0})
    for who in skippers:
        refill_queue(settings=no_cooldown)
        answers.append(skip_next(api, who, queue="holdout", reason="unclear"))
    assert answers[-1]["needs_review"] is True and answers[-1]["skip_reason"] == "unclear"
    fresh = add_annotator(api, "fresh")
    assert api.client.get(NEXT, headers=fresh, params={"queue": "holdout"}).status_code == 204
    assert counts(api)["holdout"]["queued"] == 0 and counts(api)["needs_review"] == 1

    r = api.client.post(f"{CLIPS}/{clip}/review", headers=api.admin)
    assert r.status_code == 200 and r.json()["split"] == "holdout"
    assert counts(api)["holdout"]["queued"] == 1
    r = api.client.get(NEXT, headers=fresh, params={"queue": "holdout"})
    assert r.status_code == 200 and r.json()["clip"]["id"] == clip
    # Those who skipped it still never get it back.
    r = api.client.get(NEXT, headers=skippers[0], params={"queue": "holdout"})
    assert r.status_code == 204
    with session_scope(db_url) as s:
        row = s.get(Clip, clip)
        assert row is not None and row.needs_review is False
    # Only skips after the review count: one more skipper does not park it again.
    again = skip_next(api, fresh, queue="holdout", reason="not_applicable")
    assert again["needs_review"] is False
