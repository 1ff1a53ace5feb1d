"""The labeling queue on SQLite and PostgreSQL: rank order, 204 when empty, the same lease on
a reload, skip, release, short holds and their renewal, expiry, labels closing leases,
refills, and no clip ever leased twice under concurrent annotators hitting a real uvicorn
server."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tagloop.auth import create_token
from tagloop.db import queue as queue_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import ModelVersion, Prediction, QueueItem, utcnow
from tagloop.errors import Conflict, InvalidInput, NotFound
from tests.integration.api_helpers import ApiHarness, make_api
from tests.integration.stack_helpers import running_stack, stack_settings
from tests.integration.test_labels import add_clips

NEXT = "/api/v1/queue/next"


def fill(db_url: str, clip_ids: list[int], *, strategy: str = "entropy") -> None:
    """Queue ``clip_ids`` best first, with descending scores."""
    with session_scope(db_url) as s:
        items = [(c, strategy, 1.0 - i / 1000) for i, c in enumerate(clip_ids)]
        queue_repo.replace_queue(s, items=items)


def statuses(db_url: str) -> dict[int, list[str]]:
    """clip id -> statuses of its rows, oldest row first."""
    with session_scope(db_url) as s:
        rows = s.execute(select(QueueItem.clip_id, QueueItem.status).order_by(QueueItem.id))
        out: dict[int, list[str]] = {}
        for clip_id, status in rows:
            out.setdefault(clip_id, []).append(status)
        return out


def add_annotator(h: ApiHarness, name: str) -> dict[str, str]:
    with session_scope(h.settings.database_url) as s:
        token = create_token(s, name=name, role="annotator")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(tmp_path, db_url)
    r = h.client.post("/api/v1/tags", headers=h.admin, json={"name": "dog"})
    assert r.status_code == 201
    return h


def test_empty_queue_is_204(api: ApiHarness) -> None:
    r = api.client.get(NEXT, headers=api.annotator)
    assert r.status_code == 204 and r.content == b""
    assert api.client.get(NEXT).status_code == 401


def test_queue_order_reason_and_same_lease_on_reload(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 4)
    order = [clips[2], clips[0], clips[3], clips[1]]
    fill(db_url, order)
    first = api.client.get(NEXT, headers=api.annotator)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["clip"]["id"] == order[0]
    assert body["reason"] == {"strategy": "entropy", "score": 1.0, "rank": 0}
    assert body["suggestions"] == [] and len(body["lease_id"]) >= 32
    assert body["lease_expires_at"].endswith(("Z", "+00:00"))
    # A reload gives the same item back instead of burning the next one.
    again = api.client.get(NEXT, headers=api.annotator).json()
    assert again["lease_id"] == body["lease_id"] and again["clip"]["id"] == order[0]
    # Other annotators get the following ranks, in order.
    got = [api.client.get(NEXT, headers=add_annotator(api, f"a{i}")).json() for i in range(3)]
    assert [g["clip"]["id"] for g in got] == order[1:]
    assert [g["reason"]["rank"] for g in got] == [1, 2, 3]
    assert api.client.get(NEXT, headers=add_annotator(api, "late")).status_code == 204
    assert len({g["lease_id"] for g in got} | {body["lease_id"]}) == 4


def test_suggestions_come_from_the_latest_prediction(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    with session_scope(db_url) as s:
        old, new = ModelVersion(status="retired"), ModelVersion(status="promoted")
        s.add_all([old, new])
        s.flush()
        s.add(Prediction(clip_id=clip, model_version_id=old.id, top_tags=[["cat", 0.9]]))
        s.add(
            Prediction(
                clip_id=clip,
                model_version_id=new.id,
                top_tags=[{"tag": "dog", "p": 0.8}],
                created_at=utcnow() + timedelta(seconds=1),
            )
        )
    fill(db_url, [clip])
    body = api.client.get(NEXT, headers=api.annotator).json()
    assert body["suggestions"] == [{"tag": "dog", "p": 0.8, "group": None}]  # with its group
    assert body["decision_threshold"] is None  # no holdout threshold fitted yet
    assert body["group_threshold"] is None


def test_suggestions_carry_the_threshold_fitted_for_their_version(
    api: ApiHarness, db_url: str
) -> None:
    """The pre-check threshold is the one fitted on the holdout for the version that made
    the suggestions, not for another version (here the retired one holds a different one)."""
    clip = add_clips(db_url, 1)[0]
    with session_scope(db_url) as s:
        old = ModelVersion(
            status="retired",
            metrics={"holdout": {"decision_threshold": 0.9, "group_threshold": 0.8}},
        )
        new = ModelVersion(
            status="promoted",
            metrics={
                "holdout": {"decision_threshold": 0.27, "group_threshold": 0.31, "n_clips": 40}
            },
        )
        s.add_all([old, new])
        s.flush()
        s.add(Prediction(clip_id=clip, model_version_id=old.id, top_tags=[]))
        s.add(
            Prediction(
                clip_id=clip,
                model_version_id=new.id,
                top_tags=[{"tag": "dog", "p": 0.3}],
                created_at=utcnow() + timedelta(seconds=1),
            )
        )
    fill(db_url, [clip])
    body = api.client.get(NEXT, headers=api.annotator).json()
    assert body["suggestions"] == [{"tag": "dog", "p": 0.3, "group": None}]
    assert body["decision_threshold"] == 0.27
    assert body["group_threshold"] == 0.31


def test_skip_releases_and_is_not_offered_again(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 2)
    fill(db_url, clips)
    lease = api.client.get(NEXT, headers=api.annotator).json()
    assert lease["clip"]["id"] == clips[0]
    other = add_annotator(api, "other")
    r = api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    r = api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=api.annotator)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "lease_id": lease["lease_id"],
        "clip_id": clips[0],
        "status": "skipped",
        "skip_reason": None,
        "needs_review": False,
    }
    r = api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=api.annotator)
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_closed"
    # Neither the skipper nor anyone else gets the skipped clip again in this refill.
    nxt = api.client.get(NEXT, headers=api.annotator).json()
    assert nxt["clip"]["id"] == clips[1]
    assert api.client.get(NEXT, headers=other).status_code == 204
    assert statuses(db_url) == {clips[0]: ["skipped"], clips[1]: ["leased"]}


def test_release_hands_the_clip_back_without_a_skip(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 2)
    fill(db_url, clips)
    lease = api.client.get(NEXT, headers=api.annotator).json()
    assert lease["clip"]["id"] == clips[0]
    release = f"/api/v1/queue/{lease['lease_id']}/release"
    other = add_annotator(api, "other")
    r = api.client.post(release, headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    assert api.client.post(release).status_code == 401
    r = api.client.post(release, headers=api.annotator)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "lease_id": lease["lease_id"],
        "clip_id": clips[0],
        "status": "expired",
        "skip_reason": None,
        "needs_review": False,
    }
    r = api.client.post(release, headers=api.annotator)
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
    # Back at its rank, for anyone, the releaser included (no skip was recorded).
    again = api.client.get(NEXT, headers=api.annotator).json()
    assert again["clip"]["id"] == clips[0] and again["lease_id"] != lease["lease_id"]
    assert again["reason"] == lease["reason"]
    assert statuses(db_url) == {clips[0]: ["expired", "leased"], clips[1]: ["queued"]}
    export = api.client.get("/api/v1/export", headers=api.admin, params={"format": "jsonl"})
    assert '"skips": [{' not in export.text


def _ends_in(body: dict[str, object]) -> float:
    """Seconds from now until the lease in ``body`` ends."""
    from datetime import datetime

    return (datetime.fromisoformat(str(body["lease_expires_at"])) - utcnow()).total_seconds()


def test_renew_holds_the_callers_live_lease(api: ApiHarness, db_url: str) -> None:
    """Issue 20: the UI asks for short holds and renews them while its tab is open."""
    clips = add_clips(db_url, 3)
    fill(db_url, clips)
    short = api.client.get(NEXT, headers=api.annotator, params={"hold_seconds": 30})
    assert short.status_code == 200, short.text
    lease = short.json()
    assert 25 < _ends_in(lease) <= 30
    # Without hold_seconds a new lease is held the configured lease_seconds (600).
    other = add_annotator(api, "other")
    assert 590 < _ends_in(api.client.get(NEXT, headers=other).json()) <= 600
    # Asking again gives the same lease back, its end unchanged by the new hold_seconds.
    again = api.client.get(NEXT, headers=api.annotator, params={"hold_seconds": 500}).json()
    assert again["lease_id"] == lease["lease_id"] and _ends_in(again) <= 30

    renew = f"/api/v1/queue/{lease['lease_id']}/renew"
    r = api.client.post(renew, headers=api.annotator, json={"seconds": 120})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["lease_id"], body["clip_id"], body["status"]) == (
        lease["lease_id"],
        clips[0],
        "leased",
    )
    assert 115 < _ends_in(body) <= 120 and body["lease_expires_at"].endswith(("Z", "+00:00"))
    assert 590 < _ends_in(api.client.post(renew, headers=api.annotator).json()) <= 600
    # A renewal may also shorten the hold (the client asked for it).
    shorter = api.client.post(renew, headers=api.annotator, json={"seconds": 10}).json()
    assert 5 < _ends_in(shorter) <= 10
    assert api.client.post(renew).status_code == 401
    r = api.client.post(renew, headers=other, json={"seconds": 60})
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    r = api.client.post("/api/v1/queue/no-such-lease/renew", headers=api.annotator)
    assert r.status_code == 404 and r.json()["error"]["code"] == "lease_not_found"
    # A label closes the lease: renewing it is 409 lease_closed.
    r = api.client.post(
        f"/api/v1/clips/{clips[0]}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "lease_id": lease["lease_id"]},
    )
    assert r.status_code == 201 and r.json()["lease_closed"] is True
    r = api.client.post(renew, headers=api.annotator, json={"seconds": 60})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_closed"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"seconds": 9.5}, "invalid_hold_seconds"),
        ({"seconds": 601}, "invalid_hold_seconds"),
        ({"seconds": -10}, "invalid_hold_seconds"),
        ('{"seconds": NaN}', "validation_error"),
        ('{"seconds": 1e999}', "validation_error"),
        ({"seconds": "soon"}, "validation_error"),
    ],
)
def test_renew_and_next_refuse_holds_out_of_bounds(
    api: ApiHarness, db_url: str, body: dict[str, object] | str, code: str
) -> None:
    clip = add_clips(db_url, 1)[0]
    fill(db_url, [clip])
    lease = api.client.get(NEXT, headers=api.annotator).json()
    renew = f"/api/v1/queue/{lease['lease_id']}/renew"
    if isinstance(body, str):
        hdr = {**api.annotator, "Content-Type": "application/json"}
        r = api.client.post(renew, headers=hdr, content=body)
    else:
        r = api.client.post(renew, headers=api.annotator, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    # The refused renewal changed nothing: the lease still ends when it did.
    assert 590 < _ends_in(api.client.get(NEXT, headers=api.annotator).json()) <= 600
    # The same bounds for a new lease's hold (a query string has NaN and inf too), checked
    # before the caller's lease is looked up.
    for bad in ["9", "601", "nan", "inf", "-1"]:
        r = api.client.get(NEXT, headers=api.annotator, params={"hold_seconds": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_hold_seconds"
    r = api.client.get(NEXT, headers=api.annotator, params={"hold_seconds": "soon"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_renew_never_revives_an_expired_lease(api: ApiHarness, db_url: str) -> None:
    clip = add_clips(db_url, 1)[0]
    fill(db_url, [clip])
    lease = api.client.get(NEXT, headers=api.annotator, params={"hold_seconds": 10}).json()
    with session_scope(db_url) as s:  # the hold ran out (nobody swept it yet)
        row = s.scalar(select(QueueItem).where(QueueItem.lease_id == lease["lease_id"]))
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
    renew = f"/api/v1/queue/{lease['lease_id']}/renew"
    r = api.client.post(renew, headers=api.annotator, json={"seconds": 60})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
    # The clip went back to the queue: someone else gets it, and the old lease stays dead.
    other = add_annotator(api, "other")
    taken = api.client.get(NEXT, headers=other).json()
    assert taken["clip"]["id"] == clip and taken["lease_id"] != lease["lease_id"]
    r = api.client.post(renew, headers=api.annotator)
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
    assert statuses(db_url) == {clip: ["expired", "leased"]}


def test_repository_renew_moves_the_end_of_a_live_lease_only(db_url: str, tmp_path: Path) -> None:
    make_api(tmp_path, db_url)
    clip = add_clips(db_url, 1)[0]
    fill(db_url, [clip])
    t0 = utcnow()
    with session_scope(db_url) as s:
        held = queue_repo.lease_next(s, annotator="x", lease_seconds=20, now=t0)
        assert held is not None and held.lease_id is not None
        lease_id = held.lease_id
    with session_scope(db_url) as s:
        row = queue_repo.renew(
            s, lease_id=lease_id, annotator="x", seconds=300, now=t0 + timedelta(seconds=15)
        )
        assert row.status == "leased" and row.lease_expires_at is not None
        end = row.lease_expires_at.replace(tzinfo=None)
        assert end == (t0 + timedelta(seconds=315)).replace(tzinfo=None)
    with pytest.raises(NotFound) as missing, session_scope(db_url) as s:
        queue_repo.renew(s, lease_id=lease_id, annotator="y", seconds=60)
    assert missing.value.code == "lease_not_found"
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInput), session_scope(db_url) as s:
            queue_repo.renew(s, lease_id=lease_id, annotator="x", seconds=bad)
    # Past its (renewed) end the lease cannot be renewed, though nobody swept it yet.
    with pytest.raises(Conflict) as late, session_scope(db_url) as s:
        queue_repo.renew(
            s, lease_id=lease_id, annotator="x", seconds=60, now=t0 + timedelta(seconds=316)
        )
    assert late.value.code == "lease_expired"
    assert statuses(db_url) == {clip: ["leased"]}
    with session_scope(db_url) as s:
        queue_repo.release(s, lease_id=lease_id, annotator="x")
    with pytest.raises(Conflict) as gone, session_scope(db_url) as s:
        queue_repo.renew(s, lease_id=lease_id, annotator="x", seconds=60)
    assert gone.value.code == "lease_expired"  # released: ended as if it ran out


def test_label_submit_closes_the_lease(api: ApiHarness, db_url: str) -> None:
    clips = add_clips(db_url, 3)
    fill(db_url, clips)
    lease = api.client.get(NEXT, headers=api.annotator).json()
    r = api.client.post(
        f"/api/v1/clips/{clips[0]}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "lease_id": lease["lease_id"], "seconds_spent": 3},
    )
    assert r.status_code == 201 and r.json()["lease_closed"] is True
    nxt = api.client.get(NEXT, headers=api.annotator).json()
    assert nxt["clip"]["id"] == clips[1] and nxt["lease_id"] != lease["lease_id"]
    # A lease id of another clip is a client error and stores nothing.
    r = api.client.post(
        f"/api/v1/clips/{clips[2]}/labels",
        headers=api.annotator,
        json={"tags": ["dog"], "lease_id": nxt["lease_id"]},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "lease_mismatch"
    # Without a lease id the caller's lease on that clip is closed all the same.
    r = api.client.post(
        f"/api/v1/clips/{clips[1]}/labels", headers=api.annotator, json={"none_apply": True}
    )
    assert r.status_code == 201 and r.json()["lease_closed"] is True
    # Labeling a queued clip outside the queue takes it off the queue.
    r = api.client.post(
        f"/api/v1/clips/{clips[2]}/labels", headers=api.admin, json={"none_apply": True}
    )
    assert r.status_code == 201 and r.json()["lease_closed"] is False
    assert api.client.get(NEXT, headers=api.annotator).status_code == 204
    assert statuses(db_url) == {c: ["done"] for c in clips}


def test_expired_lease_returns_to_the_queue(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url, lease_seconds=0.2)
    clip = add_clips(db_url, 1)[0]
    fill(db_url, [clip])
    first = h.client.get(NEXT, headers=h.annotator).json()
    other = add_annotator(h, "other")
    with session_scope(db_url) as s:  # time passes: the lease is long over
        assert queue_repo.expire_leases(s, now=utcnow() + timedelta(seconds=5)) == 1
    second = h.client.get(NEXT, headers=other).json()
    assert second["clip"]["id"] == clip and second["lease_id"] != first["lease_id"]
    assert second["reason"] == first["reason"]
    r = h.client.post(f"/api/v1/queue/{first['lease_id']}/skip", headers=h.annotator)
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
    # The first annotator's late label is kept but does not close the other's lease.
    r = h.client.post(
        f"/api/v1/clips/{clip}/labels",
        headers=h.annotator,
        json={"tags": [], "none_apply": True, "lease_id": first["lease_id"]},
    )
    assert r.status_code == 201 and r.json()["lease_closed"] is False
    assert statuses(db_url) == {clip: ["expired", "leased"]}


def test_short_lease_expires_by_the_clock(tmp_path: Path, db_url: str) -> None:
    h = make_api(tmp_path, db_url, lease_seconds=0.05)
    clip = add_clips(db_url, 1)[0]
    fill(db_url, [clip])
    first = h.client.get(NEXT, headers=h.annotator).json()
    threading.Event().wait(0.2)
    # The same annotator asking again gets a new lease on the returned clip.
    second = h.client.get(NEXT, headers=h.annotator).json()
    assert second["clip"]["id"] == clip and second["lease_id"] != first["lease_id"]


def test_repository_refill_keeps_leases_and_validates(db_url: str, tmp_path: Path) -> None:
    make_api(tmp_path, db_url)
    clips = add_clips(db_url, 5)
    fill(db_url, clips[:3])
    with session_scope(db_url) as s:
        held = queue_repo.lease_next(s, annotator="x", lease_seconds=60)
        assert held is not None and held.clip_id == clips[0]
        lease_id = held.lease_id
    with session_scope(db_url) as s:
        # The refill re-lists the leased clip: it must not be queued a second time.
        n = queue_repo.replace_queue(
            s, items=[(clips[0], "margin", 0.9), (clips[4], "margin", 0.8)]
        )
        assert n == 1
    assert statuses(db_url) == {clips[0]: ["leased"], clips[4]: ["queued"]}
    with session_scope(db_url) as s:
        nxt = queue_repo.lease_next(s, annotator="y", lease_seconds=60)
        assert nxt is not None and (nxt.clip_id, nxt.strategy, nxt.rank) == (clips[4], "margin", 1)
        assert queue_repo.lease_next(s, annotator="z", lease_seconds=60) is None
        counts = queue_repo.count_by_status(s)
        assert counts == {"queued": 0, "leased": 2, "done": 0, "skipped": 0, "expired": 0}
    with session_scope(db_url) as s:
        assert queue_repo.complete(s, clip_id=clips[0], annotator="x", lease_id=lease_id)
        assert not queue_repo.complete(s, clip_id=clips[0], annotator="x")
    with pytest.raises(InvalidInput) as exc, session_scope(db_url) as s:
        queue_repo.replace_queue(s, items=[(clips[1], "e", 1.0), (clips[1], "e", 0.5)])
    assert exc.value.code == "duplicate_clip"
    with pytest.raises(InvalidInput), session_scope(db_url) as s:
        queue_repo.lease_next(s, annotator="x", lease_seconds=0)
    with pytest.raises(NotFound), session_scope(db_url) as s:
        queue_repo.skip(s, lease_id="missing", annotator="x")
    with pytest.raises(Conflict), session_scope(db_url) as s:
        queue_repo.skip(s, lease_id=str(lease_id), annotator="x")


def test_refill_returns_expired_leases_before_replacing(db_url: str, tmp_path: Path) -> None:
    make_api(tmp_path, db_url)
    clips = add_clips(db_url, 2)
    fill(db_url, clips)
    with session_scope(db_url) as s:
        assert queue_repo.lease_next(s, annotator="x", lease_seconds=1) is not None
    with session_scope(db_url) as s:
        later = utcnow() + timedelta(minutes=5)
        assert queue_repo.replace_queue(s, items=[(clips[0], "entropy", 0.5)], now=later) == 1
    # The lapsed lease is history now; its clip is queued once, from the new refill.
    assert statuses(db_url) == {clips[0]: ["expired", "queued"]}


def test_a_refill_leaves_out_clips_labeled_or_parked_while_it_ran(
    db_url: str, tmp_path: Path
) -> None:
    """A refill builds its batch before it writes; a clip labeled or parked in between (an
    annotator leased and labeled it meanwhile) is not queued again."""
    from tagloop.db.models import Clip, Label

    make_api(tmp_path, db_url)
    clips = add_clips(db_url, 3)
    with session_scope(db_url) as s:
        s.add(Label(clip_id=clips[0], tags=["dog"], annotator="ann"))
        s.get(Clip, clips[1]).needs_review = True  # type: ignore[union-attr]
    with session_scope(db_url) as s:
        items = [(c, "entropy", 0.5) for c in clips]
        assert queue_repo.replace_queue(s, items=items) == 1
    assert statuses(db_url) == {clips[2]: ["queued"]}


# --- Concurrency against a real server -------------------------------------------------------


def hammer(
    api_url: str, headers: list[dict[str, str]], *, rounds: int
) -> tuple[list[tuple[str, int]], list[str]]:
    """Each header set is one annotator thread doing next + label ``rounds`` times at once.

    Returns (annotator index, clip id) for every clip handed out, and unexpected answers."""
    barrier = threading.Barrier(len(headers))
    handed: list[tuple[str, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def annotate(i: int, hdr: dict[str, str]) -> None:
        with httpx.Client(base_url=api_url, headers=hdr, timeout=60) as c:
            barrier.wait()
            for _ in range(rounds):
                r = c.get(NEXT)
                if r.status_code == 204:
                    return
                if r.status_code != 200:
                    with lock:
                        errors.append(r.text)
                    return
                clip = r.json()["clip"]["id"]
                with lock:
                    handed.append((str(i), clip))
                lease = r.json()["lease_id"]
                body = {"tags": ["dog"], "lease_id": lease}
                r = c.post(f"/api/v1/clips/{clip}/labels", json=body)
                if r.status_code != 201 or not r.json()["lease_closed"]:
                    with lock:
                        errors.append(r.text)

    threads = [threading.Thread(target=annotate, args=(i, h)) for i, h in enumerate(headers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return handed, errors


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_clip_is_leased_twice_under_concurrency(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        database_url: str = request.getfixturevalue("pg_url")
    else:
        database_url = f"sqlite:///{tmp_path / 'tagloop.db'}"
    settings = stack_settings(tmp_path, database_url=database_url, broker_url="")
    with running_stack(settings, ["api"]) as (_stack, client):
        assert client is not None
        clips = add_clips(database_url, 60)
        fill(database_url, clips)
        headers: list[dict[str, str]] = []
        with session_scope(database_url) as s:
            for i in range(20):
                token = create_token(s, name=f"annotator-{i}", role="annotator")
                headers.append({"Authorization": f"Bearer {token}"})
            admin_token = create_token(s, name="admin-tags", role="admin")
        r = httpx.post(
            f"{settings.api_url}/api/v1/tags",
            headers={"Authorization": f"Bearer {admin_token}"},
            json={"name": "dog"},
        )
        assert r.status_code == 201
        # 20 annotators x 5 rounds = 100 asks for 60 clips: every clip once, the rest 204.
        handed, errors = hammer(settings.api_url, headers, rounds=5)
        per_clip = Counter(clip for _, clip in handed)
        assert [c for c, n in per_clip.items() if n > 1] == []
        assert errors == []
        assert sorted(per_clip) == sorted(clips)
        assert statuses(database_url) == {c: ["done"] for c in clips}

        # One annotator reloading in 10 tabs at once still holds a single lease.
        more = add_clips(database_url, 5, sha="b")
        fill(database_url, more)
        same = [headers[0]] * 10
        barrier = threading.Barrier(len(same))
        leases: list[str] = []

        def ask(hdr: dict[str, str]) -> None:
            barrier.wait()
            got = httpx.get(f"{settings.api_url}{NEXT}", headers=hdr, timeout=60)
            leases.append(got.json()["lease_id"])

        threads = [threading.Thread(target=ask, args=(h,)) for h in same]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(leases) == 10 and len(set(leases)) == 1
        rows = [status for per in statuses(database_url).values() for status in per]
        assert rows.count("leased") == 1
