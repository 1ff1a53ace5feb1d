"""A promotion never empties the labeling queue: on real workers (SQLite, SQLAlchemy broker,
beat ticking every 0.5 s so refills keep running while the new version scores), the queue
table is read every 50 ms from the first round's request to the end of a second promotion
and a roll back. Before the fix, the first refill after the first promotion ranked by a
version with no scores yet and replaced the seed batch with nothing until scoring ended."""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tagloop.client import TagloopClient
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import loop_state
from tagloop.db.engine import session_scope
from tagloop.db.loop_state import offerable
from tagloop.db.models import Clip, ModelVersion, Prediction, QueueItem, utcnow
from tagloop.pipeline.scoring import SEED_STRATEGY
from tests.integration.stack_helpers import running_stack, stack_settings, wait_until

VIDEOS, LABELED = 30, 20  # 10 unlabeled clips; the queue holds 4 of them


@pytest.fixture(scope="module")
def gap_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_av_dataset(build_demo_samples(n=VIDEOS, seed=11), tmp_path_factory.mktemp("gap"))


@dataclass(frozen=True)
class Observation:
    at: float
    queued: frozenset[int]
    offerable: int  # unlabeled, unparked pool clips nobody holds or is cooling down from
    promoted: int | None
    promoted_scored: bool  # the promoted version has a prediction


def observe(database_url: str) -> Observation:
    with session_scope(database_url) as s:
        queued = frozenset(
            int(c)
            for c in s.scalars(
                select(QueueItem.clip_id).where(
                    QueueItem.status == "queued", QueueItem.lane == "al"
                )
            )
        )
        where = offerable(now=utcnow(), cooldown_s=0.0, queued_too=True)
        n = int(s.scalar(select(func.count(Clip.id)).where(*where)) or 0)
        promoted = s.scalar(select(ModelVersion.id).where(ModelVersion.status == "promoted"))
        scored = promoted is not None and (
            s.scalar(select(Prediction.id).where(Prediction.model_version_id == promoted).limit(1))
            is not None
        )
        return Observation(time.monotonic(), queued, n, promoted, scored)


class Watcher(threading.Thread):
    """Reads the queue table every ``every_s`` until stopped."""

    def __init__(self, database_url: str, *, every_s: float = 0.05) -> None:
        super().__init__(name="queue-watcher", daemon=True)
        self.database_url, self.every_s = database_url, every_s
        self.seen: list[Observation] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.seen.append(observe(self.database_url))
            except Exception as exc:  # a locked SQLite read: try again next time
                self.errors.append(repr(exc))
            time.sleep(self.every_s)


def train(client: TagloopClient) -> dict:
    job = client.request("POST", "/api/v1/models/train").json()

    def done() -> bool:
        return client.get_job(job["job_id"])["status"] in ("succeeded", "failed")

    wait_until(done, timeout_s=300, poll_s=0.3, what=f"round {job['job_id']}")
    finished = client.get_job(job["job_id"])
    assert finished["status"] == "succeeded", finished
    return finished


def ranked_by(database_url: str, version_id: int, strategy: str) -> bool:
    """The promoted version is ``version_id``, has scored every unlabeled clip, and the queue
    holds only clips it ranked."""
    with session_scope(database_url) as s:
        if loop_state.has_unscored(s, version_id=version_id):
            return False
        rows = s.scalars(select(QueueItem.strategy).where(QueueItem.status == "queued"))
        return set(rows) == {strategy}


def test_promotions_and_a_roll_back_never_empty_the_queue(tmp_path: Path, gap_set: Path) -> None:
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        clip_seconds=2.0,
        audio_frames=128,
        train_epochs=3,
        train_patience=3,
        torch_threads=1,
        queue_size=4,
        # Always "low" while unqueued clips exist, never held back: every tick refills, so
        # refills run while a promoted version is still scoring.
        queue_low_water=5,
        refill_min_interval_seconds=0.0,
        loop_tick_seconds=0.5,
        per_video_cap=1,
        retrain_min_labels=10_000,  # rounds only on request
        promote_tolerance=10.0,  # the second round is promoted too
    )
    db = settings.database_url
    rows = list(csv.DictReader(gap_set.open()))
    with running_stack(settings, ["api", "worker", "beat"]) as (_, client):
        for d in range(10):
            client.request("POST", "/api/v1/tags", json={"name": str(d), "group": "digit"})
        videos = [client.upload_video(gap_set.parent / r["file"]) for r in rows]
        client.wait_for_videos([v["id"] for v in videos], timeout_s=300)
        clip_of = {v["id"]: client.list_clips(video_id=v["id"])[0]["id"] for v in videos}
        truth = {clip_of[v["id"]]: r["digit"] for v, r in zip(videos, rows, strict=True)}
        clips = list(truth)

        def label(ids: list[int]) -> None:
            for c in ids:
                r = client.request("POST", f"/api/v1/clips/{c}/labels", json={"tags": [truth[c]]})
                assert r.status_code == 201

        label(clips[:LABELED])

        def seeded() -> bool:
            with session_scope(db) as s:
                q = select(QueueItem.clip_id, QueueItem.strategy).where(
                    QueueItem.status == "queued"
                )
                got = list(s.execute(q))
            return (
                len(got) == 4
                and {st for _, st in got} == {SEED_STRATEGY}
                and not ({c for c, _ in got} & set(clips[:LABELED]))
            )

        wait_until(seeded, timeout_s=60, what="the seed batch on the unlabeled clips")
        seed = observe(db).queued

        watcher = Watcher(db)
        watcher.start()
        try:
            train(client)  # v1: the first promotion
            v1 = observe(db).promoted
            assert v1 is not None
            wait_until(
                lambda: ranked_by(db, v1, settings.selection_strategy),
                timeout_s=120,
                what="the queue ranked by v1",
            )
            first_promotion_done = time.monotonic()
            label(clips[LABELED : LABELED + 2])
            train(client)  # v2: promoted, scored, ranks the queue
            v2 = observe(db).promoted
            assert v2 is not None and v2 != v1
            wait_until(
                lambda: ranked_by(db, v2, settings.selection_strategy),
                timeout_s=120,
                what="the queue ranked by v2",
            )
            rolled_back = time.monotonic()
            r = client.request("POST", f"/api/v1/models/{v1}/promote")
            assert r.json()["status"] == "promoted"
            wait_until(
                lambda: ranked_by(db, v1, settings.selection_strategy),
                timeout_s=120,
                what="the queue ranked by v1 again",
            )
            time.sleep(1.0)  # a few more ticks' refills after the roll back
        finally:
            watcher.stop.set()
            watcher.join(timeout=10)

    seen = watcher.seen
    assert len(seen) > 100, (len(seen), watcher.errors[-3:])
    # The run went through the gap: the first version was promoted and had no scores yet.
    between = [o for o in seen if o.promoted == v1 and not o.promoted_scored]
    assert between, "never saw v1 promoted before its scores: the test missed the gap"
    empty = [
        f"{o.at - seen[0].at:.2f} s: promoted v{o.promoted} (scored: {o.promoted_scored}), "
        f"{o.offerable} offerable clips, none queued"
        for o in seen
        if o.offerable > 0 and not o.queued
    ]
    assert not empty, empty[:10]
    # Between v1's promotion and its first scores the seed batch was served, unchanged.
    assert {o.queued for o in between} == {seed}, [sorted(o.queued) for o in between][:5]
    # Every stage was watched: after v1's scores, during v2 and after the roll back.
    assert any(o.at > first_promotion_done and o.promoted == v2 for o in seen)
    assert any(o.at > rolled_back and o.promoted == v1 for o in seen)
