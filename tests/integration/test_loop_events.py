"""Each event that changes what annotators should see, against a real database (SQLite and
PostgreSQL) and the real API: skips (reason, never back to who skipped, cool-down, parking),
labels and empty answers asking for refills, rounds counted from their label watermark, a
manual round while one runs, promotion asking for scores, the holdout's own queue, and expired
leases of labeled clips. Workers are not running here: the jobs the events create are checked
in the database, and the refill they ask for is run in-process."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tagloop.auth import create_token
from tagloop.db import loop_state
from tagloop.db import queue as queue_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Job, Label, ModelVersion, Prediction, QueueItem, Video, utcnow
from tagloop.pipeline import loop
from tagloop.pipeline.scoring import refill_queue
from tagloop.storage import BlobStore
from tagloop.task_names import PRETRAIN
from tests.integration.api_helpers import ApiHarness, make_api

NEXT = "/api/v1/queue/next"


def add_scored_pool(
    db_url: str,
    uncertainties: list[float],
    *,
    per_video: int = 1,
    embedding_uris: list[str] | None = None,
) -> list[int]:
    """Clips with tensors, each in its own video (or ``per_video`` per video), scored by the
    promoted version (created if there is none) with these uncertainties (and these
    ``key#row`` embedding blobs, when given)."""
    with session_scope(db_url) as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.status == "promoted"))
        if version is None:
            version = ModelVersion(status="promoted", artifact_uri="models/x.pt", vocabulary=[])
            s.add(version)
            s.flush()
        ids = []
        for i, u in enumerate(uncertainties):
            if i % per_video == 0:
                video = Video(sha256=uuid.uuid4().hex * 2, filename="v.mp4", blob_uri="v")
                s.add(video)
                s.flush()
            clip = Clip(video_id=video.id, index=i % per_video, start_s=0, end_s=1, tensor_uri="t")
            s.add(clip)
            s.flush()
            s.add(
                Prediction(
                    clip_id=clip.id,
                    model_version_id=version.id,
                    uncertainty=u,
                    embedding_uri=embedding_uris[i] if embedding_uris else None,
                )
            )
            ids.append(clip.id)
        return ids


def headers(h: ApiHarness, name: str) -> dict[str, str]:
    with session_scope(h.settings.database_url) as s:
        return {"Authorization": f"Bearer {create_token(s, name=name, role='annotator')}"}


def jobs(db_url: str, kind: str) -> list[Job]:
    with session_scope(db_url) as s:
        return list(s.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def queued(db_url: str, lane: str = "al") -> list[int]:
    with session_scope(db_url) as s:
        q = (
            select(QueueItem.clip_id)
            .where(QueueItem.status == "queued", QueueItem.lane == lane)
            .order_by(QueueItem.rank)
        )
        return list(s.scalars(q))


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    h = make_api(
        tmp_path,
        db_url,
        queue_size=4,
        queue_low_water=2,
        skip_cooldown_seconds=0.0,
        skip_park_after=2,
        refill_min_interval_seconds=0.0,
    )
    assert h.client.post("/api/v1/tags", headers=h.admin, json={"name": "dog"}).status_code == 201
    return h


def test_skips_keep_reasons_never_return_to_the_skipper_and_park(api: ApiHarness) -> None:
    db = api.settings.database_url
    x, y = add_scored_pool(db, [0.9, 0.5])
    refill_queue(settings=api.settings)
    assert queued(db) == [x, y]
    ana, bo, cy = headers(api, "ana"), headers(api, "bo"), headers(api, "cy")

    lease = api.client.get(NEXT, headers=ana).json()
    assert lease["clip"]["id"] == x
    r = api.client.post(
        f"/api/v1/queue/{lease['lease_id']}/skip", headers=ana, json={"reason": "  too  dark "}
    )
    assert r.status_code == 200 and r.json()["skip_reason"] == "too dark"
    assert r.json()["needs_review"] is False
    # Back after the cool-down (0 s here), behind the clips nobody skipped...
    refill_queue(settings=api.settings)
    assert queued(db) == [y, x]
    # ...and never to the one who skipped it: ana gets y although x is the better rank now.
    ana_lease = api.client.get(NEXT, headers=ana).json()
    assert ana_lease["clip"]["id"] == y
    bo_lease = api.client.get(NEXT, headers=bo).json()
    assert bo_lease["clip"]["id"] == x
    r = api.client.post(
        f"/api/v1/queue/{bo_lease['lease_id']}/skip", headers=bo, json={"reason": "unclear"}
    )
    # Two different annotators skipped it: parked, out of every queue.
    assert r.json()["needs_review"] is True
    refill_queue(settings=api.settings)
    assert x not in queued(db)
    assert api.client.get(NEXT, headers=cy).status_code == 204
    with session_scope(db) as s:
        assert s.get(Clip, x).needs_review is True  # type: ignore[union-attr]
        reasons = s.scalars(
            select(QueueItem.skip_reason).where(QueueItem.clip_id == x).order_by(QueueItem.id)
        )
        assert [r for r in reasons if r] == ["too dark", "unclear"]
    # A reason longer than the limit is refused with a code, and the lease stays open.
    r = api.client.post(
        f"/api/v1/queue/{ana_lease['lease_id']}/skip", headers=ana, json={"reason": "x" * 501}
    )
    assert r.status_code == 422
    assert api.client.get(NEXT, headers=ana).json()["lease_id"] == ana_lease["lease_id"]


def test_labels_and_empty_answers_ask_for_a_refill_only_when_low(api: ApiHarness) -> None:
    db = api.settings.database_url
    clips = add_scored_pool(db, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    refill_queue(settings=api.settings)
    assert len(queued(db)) == 4
    ana = headers(api, "ana")
    # 4 queued -> 3, 2 (not below the low-water mark of 2), then 1: a refill job.
    for expected_jobs in (0, 0, 1):
        lease = api.client.get(NEXT, headers=ana).json()
        r = api.client.post(
            f"/api/v1/clips/{lease['clip']['id']}/labels",
            headers=ana,
            json={"tags": ["dog"], "lease_id": lease["lease_id"]},
        )
        assert r.status_code == 201
        assert len(jobs(db, loop.REFILL_JOB)) == expected_jobs
    [job] = jobs(db, loop.REFILL_JOB)
    assert job.params == {"trigger": "label"} and job.status == "queued"
    # The worker runs it: the three labeled clips are gone, the rest queued again.
    assert refill_queue(settings=api.settings, job_id=job.id) == 3
    assert set(queued(db)) == set(clips[3:])
    assert jobs(db, loop.REFILL_JOB)[0].status == "succeeded"

    # Everything offerable is queued and ana skips the lot: nothing is left for her, so her
    # empty answer asks for a refill, which finds nothing new to offer and is not started.
    for _ in range(3):
        lease = api.client.get(NEXT, headers=ana).json()
        api.client.post(f"/api/v1/queue/{lease['lease_id']}/skip", headers=ana)
    run_refill_jobs(api)  # the skipped clips are back (cool-down 0)
    n_jobs = len(jobs(db, loop.REFILL_JOB))
    assert api.client.get(NEXT, headers=ana).status_code == 204
    assert len(jobs(db, loop.REFILL_JOB)) == n_jobs
    # A new clip arrives, scored: the next empty answer asks for the refill that offers it.
    [new] = add_scored_pool(db, [0.1])
    assert api.client.get(NEXT, headers=ana).status_code == 204
    assert jobs(db, loop.REFILL_JOB)[-1].params == {"trigger": "queue_empty"}
    run_refill_jobs(api)
    assert api.client.get(NEXT, headers=ana).json()["clip"]["id"] == new


def run_refill_jobs(api: ApiHarness) -> None:
    """What the loop worker would do with the refill jobs the events created."""
    for job in jobs(api.settings.database_url, loop.REFILL_JOB):
        if job.status == "queued":
            refill_queue(settings=api.settings, job_id=job.id)


def test_rounds_count_labels_since_the_last_round(api: ApiHarness) -> None:
    db = api.settings.database_url
    settings = api.settings.model_copy(update={"retrain_min_labels": 2, "retrain_every_minutes": 0})
    clips = add_scored_pool(db, [0.5] * 5)
    with session_scope(db) as s:
        s.add(Label(clip_id=clips[0], annotator="a", tags=["dog"]))
    with session_scope(db) as s:
        assert not loop.on_tick(s, settings=settings).tasks[:1] or all(
            name != "tagloop.ml.train" for name, _ in loop.on_tick(s, settings=settings).tasks
        )
    with session_scope(db) as s:
        s.add(Label(clip_id=clips[1], annotator="a", tags=["dog"]))
    with session_scope(db) as s:
        plan = loop.on_tick(s, settings=settings)
        assert [n for n, _ in plan.tasks if n == "tagloop.ml.train"] == ["tagloop.ml.train"]
    [round_job] = jobs(db, loop.TRAIN_JOB)
    assert round_job.params["new_labels"] == 2 and round_job.params["label_watermark"] > 0
    # The round ends (rejected, or even failed): no new labels, no new round.
    with session_scope(db) as s:
        s.get(Job, round_job.id).status = "failed"  # type: ignore[union-attr]
    with session_scope(db) as s:
        plan = loop.on_tick(s, settings=settings)
        assert all(name != "tagloop.ml.train" for name, _ in plan.tasks)
    # A manual round while one is live is refused with a code.
    r = api.client.post("/api/v1/models/train", headers=api.admin)
    assert r.status_code == 202
    r = api.client.post("/api/v1/models/train", headers=api.admin)
    assert r.status_code == 409 and r.json()["error"]["code"] == "training_running"


def test_promotion_by_hand_asks_for_scores_once(api: ApiHarness) -> None:
    db = api.settings.database_url
    clips = add_scored_pool(db, [0.5, 0.4])
    with session_scope(db) as s:
        old = ModelVersion(status="retired", artifact_uri="models/old.pt", vocabulary=[])
        s.add(old)
        s.flush()
        old_id = old.id
    r = api.client.post(f"/api/v1/models/{old_id}/promote", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "promoted"
    [job] = jobs(db, loop.SCORE_JOB)
    assert job.status == "queued"
    # The rolled-back version has scored nothing yet: the queue keeps being ranked by the
    # newest scores instead of emptying.
    assert refill_queue(settings=api.settings) == 2 and set(queued(db)) == set(clips)
    # A second promotion while that score job is pending does not stack another.
    r = api.client.post(f"/api/v1/models/{old_id}/promote", headers=api.admin)
    assert r.status_code == 200 and len(jobs(db, loop.SCORE_JOB)) == 1


@pytest.mark.parametrize("strategy", ["random", "entropy"])
def test_random_is_a_uniform_sample_and_only_ranked_strategies_spread_the_batch(
    tmp_path: Path, db_url: str, strategy: str
) -> None:
    """The four top-ranked clips are near-duplicates. ``entropy`` (k-center) spreads its
    batch over the far ones; ``random`` takes its own top four, as the simulation and the
    benchmarks' uniform reference do."""
    h = make_api(tmp_path, db_url, queue_size=4, selection_strategy=strategy)
    points = np.array([[0, 0], [0, 0.01], [0.01, 0], [0.01, 0.01], [9, 0], [0, 9], [9, 9], [-9, 0]])
    buffer = io.BytesIO()
    np.save(buffer, points.astype(np.float32))
    BlobStore(h.settings.blob_url).put_bytes("embeddings/e.npy", buffer.getvalue())
    clips = add_scored_pool(
        db_url,
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
        embedding_uris=[f"embeddings/e.npy#{row}" for row in range(len(points))],
    )
    assert refill_queue(settings=h.settings) == 4
    if strategy == "random":
        assert queued(db_url) == clips[:4]
    else:
        assert clips[0] in queued(db_url) and len(set(queued(db_url)) & set(clips[4:])) == 3


def test_holdout_has_its_own_queue_and_never_enters_active_learning(api: ApiHarness) -> None:
    db = api.settings.database_url
    clips = add_scored_pool(db, [0.9, 0.8, 0.7, 0.6])
    refill_queue(settings=api.settings)
    ana = headers(api, "ana")
    r = api.client.post("/api/v1/holdout", headers=ana, json={"clip_ids": clips[:2]})
    assert r.status_code == 403
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"clip_ids": [clips[0], 10**9]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "clip_not_found"
    r = api.client.post(
        "/api/v1/holdout", headers=api.admin, json={"fraction": 0.5, "clip_ids": []}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_holdout"
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"clip_ids": clips[:2]})
    assert r.json() == {"marked": 2, "clips": 2, "labeled": 0, "queued": 2}
    assert set(queued(db)) == set(clips[2:]) and set(queued(db, "holdout")) == set(clips[:2])
    refill_queue(settings=api.settings)
    assert set(queued(db)) == set(clips[2:])  # a refill never brings them back
    held = api.client.get(NEXT, headers=ana, params={"queue": "holdout"}).json()
    assert held["clip"]["id"] in clips[:2] and held["reason"]["strategy"] == "holdout"
    al = api.client.get(NEXT, headers=ana).json()  # one lease per lane
    assert al["clip"]["id"] in clips[2:]
    assert api.client.get(NEXT, headers=ana, params={"queue": "nope"}).status_code == 422
    # A random sample by fraction draws from unlabeled pool clips only.
    r = api.client.post("/api/v1/holdout", headers=api.admin, json={"fraction": 0.25})
    assert r.json()["marked"] == 1 and r.json()["clips"] == 3


def test_an_expired_lease_of_a_labeled_clip_does_not_come_back(api: ApiHarness) -> None:
    db = api.settings.database_url
    [x] = add_scored_pool(db, [0.9])
    refill_queue(settings=api.settings)
    lease = api.client.get(NEXT, headers=headers(api, "ana")).json()
    # Somebody labels the clip outside the queue while ana's lease runs out.
    r = api.client.post(f"/api/v1/clips/{x}/labels", headers=api.admin, json={"tags": ["dog"]})
    assert r.status_code == 201
    with session_scope(db) as s:
        assert queue_repo.expire_leases(s, now=utcnow() + timedelta(hours=1)) == 1
    assert queued(db) == []
    assert api.client.get(NEXT, headers=headers(api, "bo")).status_code == 204
    assert lease["clip"]["id"] == x


def test_the_seed_batch_reads_a_bounded_spread_out_sample(tmp_path: Path, db_url: str) -> None:
    """Before any model, a refill reads at most seed_candidates clips' tensors (every k-th
    id), queues clips nobody skipped first, and never the whole pool into memory."""
    import torch

    from tagloop.features.clip_tensor import ClipTensors, dump_clip_tensors
    from tagloop.storage import BlobStore

    h = make_api(tmp_path, db_url, queue_size=4, seed_candidates=8, per_video_cap=1)
    store = BlobStore(h.settings.blob_url)
    gen = torch.Generator().manual_seed(0)
    with session_scope(db_url) as s:
        ids = []
        for i in range(30):
            video = Video(sha256=uuid.uuid4().hex * 2, filename="v.mp4", blob_uri="v")
            s.add(video)
            s.flush()
            frames = torch.randint(0, 255, (2, 3, 8, 8), generator=gen, dtype=torch.uint8)
            tensors = ClipTensors(frames=frames, logmel=torch.randn(16, 20), audio_mask=True)
            store.put_bytes(f"t/{i}", dump_clip_tensors(tensors))
            clip = Clip(video_id=video.id, index=0, start_s=0, end_s=1, tensor_uri=f"t/{i}")
            s.add(clip)
            s.flush()
            ids.append(clip.id)
    assert refill_queue(settings=h.settings) == 4
    picked = queued(db_url)
    step = -(-30 // 8)  # 30 offerable clips, 8 candidates: every 4th id
    assert len(set(picked)) == 4 and all(c % step == 0 for c in picked), picked
    assert all(r == "seed_kcenter" for r in strategies(db_url))


def strategies(db_url: str) -> list[str]:
    with session_scope(db_url) as s:
        return list(s.scalars(select(QueueItem.strategy).where(QueueItem.status == "queued")))


def test_only_clips_with_sound_count_towards_a_pretraining_run(api: ApiHarness) -> None:
    db = api.settings.database_url
    settings = api.settings.model_copy(update={"pretrain_after_new_clips": 3})

    def pretrain_planned() -> bool:
        with session_scope(db) as s:
            return any(n == PRETRAIN for n, _ in loop.on_tick(s, settings=settings).tasks)

    silent = add_scored_pool(db, [0.5] * 4)
    with session_scope(db) as s:
        assert loop_state.new_clips_since_pretrain(s) == 0
    assert not pretrain_planned()  # a silent pool never starts a run that can only fail
    with session_scope(db) as s:
        for c in silent[:3]:
            s.get(Clip, c).has_audio = True  # type: ignore[union-attr]
        assert loop_state.new_clips_since_pretrain(s) == 3
    assert pretrain_planned()
    [run] = jobs(db, loop.PRETRAIN_JOB)
    with session_scope(db) as s:
        assert loop_state.new_clips_since_pretrain(s) == 0  # counted from the run's watermark
        # what the next run's growth counts against
        assert loop_state.clips_at_last_pretrain(s) == 3
    assert not pretrain_planned() and len(jobs(db, loop.PRETRAIN_JOB)) == 1
    assert run.params["trigger"] == "tick"
    assert run.params["pool_clips"] == 3


def add_pool_with_tensors(h: ApiHarness, n: int) -> list[int]:
    """``n`` ready pool clips, each in its own video, with small real tensors (a seed batch
    reads them)."""
    import torch

    from tagloop.features.clip_tensor import ClipTensors, dump_clip_tensors
    from tagloop.storage import BlobStore

    store = BlobStore(h.settings.blob_url)
    gen = torch.Generator().manual_seed(1)
    ids = []
    with session_scope(h.settings.database_url) as s:
        for i in range(n):
            video = Video(sha256=uuid.uuid4().hex * 2, filename="v.mp4", blob_uri="v")
            s.add(video)
            s.flush()
            frames = torch.randint(0, 255, (2, 3, 8, 8), generator=gen, dtype=torch.uint8)
            tensors = ClipTensors(frames=frames, logmel=torch.randn(16, 20), audio_mask=True)
            store.put_bytes(f"p/{i}", dump_clip_tensors(tensors))
            clip = Clip(video_id=video.id, index=0, start_s=0, end_s=1, tensor_uri=f"p/{i}")
            s.add(clip)
            s.flush()
            ids.append(clip.id)
    return ids


def test_a_refill_between_versions_keeps_the_seed_batch_and_fills_from_unscored_clips(
    api: ApiHarness,
) -> None:
    """Promotion, partial scores, a second promotion and a roll back: a refill never leaves
    offerable clips out of a short queue. Clips the ranking version has not scored fill what
    its scores leave by the seed rule (before the fix, the first promotion emptied it)."""
    db = api.settings.database_url
    clips = add_pool_with_tensors(api, 8)
    assert refill_queue(settings=api.settings) == 4
    seed = queued(db)
    assert set(strategies(db)) == {"seed_kcenter"}

    def promote(*, predictions: dict[int, float]) -> int:
        with session_scope(db) as s:
            for old in s.scalars(select(ModelVersion).where(ModelVersion.status == "promoted")):
                old.status = "retired"
            v = ModelVersion(status="promoted", artifact_uri="models/x.pt", vocabulary=[])
            s.add(v)
            s.flush()
            for c, u in predictions.items():
                s.add(Prediction(clip_id=c, model_version_id=v.id, uncertainty=u))
            return int(v.id)

    # The first promotion, no scores yet: the same seed batch, not an empty queue.
    v1 = promote(predictions={})
    assert refill_queue(settings=api.settings) == 4 and queued(db) == seed
    # Its first page scored two clips: they lead, the seed rule fills the rest from the others.
    with session_scope(db) as s:
        s.add(Prediction(clip_id=clips[0], model_version_id=v1, uncertainty=0.9))
        s.add(Prediction(clip_id=clips[1], model_version_id=v1, uncertainty=0.8))
    assert refill_queue(settings=api.settings) == 4
    assert queued(db)[:2] == clips[:2]
    assert strategies(db).count("seed_kcenter") == 2
    assert not set(queued(db)[2:]) & set(clips[:2])
    # A second promotion without scores ranks by v1's meanwhile (the newest scores there are).
    promote(predictions={})
    assert refill_queue(settings=api.settings) == 4 and queued(db)[:2] == clips[:2]
    # Roll back to a version whose scored clips are all labeled now: seed picks, not nothing.
    for c in clips[:2]:
        r = api.client.post(f"/api/v1/clips/{c}/labels", headers=api.admin, json={"tags": ["dog"]})
        assert r.status_code == 201
    with session_scope(db) as s:
        for v in s.scalars(select(ModelVersion)):
            v.status = "promoted" if v.id == v1 else "retired"
    assert refill_queue(settings=api.settings) == 4
    assert set(strategies(db)) == {"seed_kcenter"} and not set(queued(db)) & set(clips[:2])
