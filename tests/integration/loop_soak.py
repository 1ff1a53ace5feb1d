"""The liveness soak: the real stack (API, media/ml worker, loop worker, beat) under randomised
use, measured from outside.

Simulated annotators with skip rates from 0 to 80 % label and skip through the API while new
videos arrive after the first promotion, an admin promotes a rejected version by hand and
rolls back, and rounds are both promoted and rejected (``promote_tolerance=-1`` rejects every
round after the first). Each empty answer is checked against the database: was there a clip
this annotator could have been offered? A stall is such a starved spell longer than one tick
plus a refill. A queue watcher reads the database every quarter second: each observation of
an empty queue while offerable clips wait outside it is counted, and each refill job that
queued nothing while some clip was offerable from before it started to after it ended is an
empty refill (how the first promotion used to empty the queue while the new version scored:
too short for a stall, wrong however short). Shared by ``test_loop_soak`` and
``bench_loop_soak``.
"""

from __future__ import annotations

import csv
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from tagloop.auth import create_token
from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.loop_state import offerable
from tagloop.db.models import Clip, Job, Label, QueueItem, utcnow
from tests.integration.stack_helpers import running_stack, wait_until

SKIP_REASONS = ("unclear", "not_applicable", "the sound and the picture disagree")
# A refill on the loop worker takes well under this on these 2 cores (the seed batch reads
# every clip's tensors); a starved spell longer than one tick plus this is a stall.
REFILL_ALLOWANCE_S = 10.0


def soak_settings(base: Settings) -> Settings:
    """A small, fast loop: 2 s clips, short rounds, a tick every 2 s, a short cool-down."""
    return base.model_copy(
        update={
            "clip_seconds": 2.0,
            "audio_frames": 128,
            "train_epochs": 3,
            "train_patience": 3,
            "torch_threads": 1,
            "queue_size": 8,
            "queue_low_water": 4,
            "per_video_cap": 1,
            "loop_tick_seconds": 2.0,
            "retrain_every_minutes": 0.0,
            "retrain_min_labels": 8,
            "promote_tolerance": -1.0,
            "skip_cooldown_seconds": 5.0,
            "skip_park_after": 2,
            "refill_min_interval_seconds": 1.0,
            "lease_seconds": 120.0,
        }
    )


@dataclass
class SoakReport:
    stalls: int = 0
    longest_starved_s: float = 0.0
    offers: int = 0
    labels: int = 0
    skips: int = 0
    empty_answers: int = 0
    parked: int = 0
    new_clips: int = 0
    new_clips_queued_or_labeled: int = 0
    skipped_reoffered_to_same_annotator: int = 0
    labeled_reoffered: int = 0
    rounds: int = 0
    rounds_without_new_labels: int = 0
    promoted_rounds: int = 0
    rejected_rounds: int = 0
    manual_promotions: int = 0
    # Watcher readings with no queued row while offerable clips were outside the queue (a
    # refill may be on its way: counted, not a failure), and the longest such spell.
    empty_observations: int = 0
    longest_empty_s: float = 0.0
    # Refill jobs that queued nothing while a clip was offerable all through them.
    empty_refills: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def new_clips_queued_fraction(self) -> float:
        return self.new_clips_queued_or_labeled / self.new_clips if self.new_clips else 1.0


class Annotator(threading.Thread):
    """Takes clips from the queue until told to stop: labels them (the oracle's answer) or
    skips them with a reason, at ``skip_rate``; records what it was offered and when."""

    def __init__(self, name: str, token: str, skip_rate: float, *, soak: Soak, seed: int) -> None:
        super().__init__(name=f"annotator-{name}", daemon=True)
        self.who, self.skip_rate, self.soak = name, skip_rate, soak
        self.http = httpx.Client(
            base_url=soak.settings.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        self.rng = random.Random(seed)
        self.skipped: set[int] = set()
        self.starved_since: float | None = None

    def run(self) -> None:
        try:
            while not self.soak.stop.is_set():
                self.step()
        except Exception as exc:  # a crash must fail the soak, not vanish with the thread
            self.soak.violations.append(f"{self.who} crashed: {exc!r}")

    def step(self) -> None:
        resp = self.http.get("/api/v1/queue/next")
        now = time.monotonic()
        if resp.status_code == 204:
            self.soak.count("empty_answers")
            if self.soak.offerable_for(self.who) > 0:
                self.starved_since = self.starved_since or now
                self.soak.note_starved(self.who, now - self.starved_since)
            else:
                self.starved_since = None
            time.sleep(0.3)
            return
        resp.raise_for_status()
        self.starved_since = None
        item = resp.json()
        clip_id = int(item["clip"]["id"])
        self.soak.count("offers")
        if clip_id in self.skipped:
            self.soak.violation("skipped_reoffered_to_same_annotator", f"{self.who} got {clip_id}")
        if self.soak.is_labeled(clip_id):
            self.soak.violation("labeled_reoffered", f"{self.who} got labeled {clip_id}")
        time.sleep(self.rng.uniform(0.2, 0.6))  # looking at the clip
        lease = item["lease_id"]
        if self.rng.random() < self.skip_rate:
            reason = self.rng.choice(SKIP_REASONS)
            r = self.http.post(f"/api/v1/queue/{lease}/skip", json={"reason": reason})
            if r.status_code == 200:
                self.skipped.add(clip_id)
                self.soak.count("skips")
            return
        truth = self.soak.truth[int(item["clip"]["video_id"])]
        r = self.http.post(
            f"/api/v1/clips/{clip_id}/labels",
            json={"tags": [truth], "lease_id": lease, "seconds_spent": 1.0},
        )
        if r.status_code == 201:
            self.soak.mark_labeled(clip_id)
            self.soak.count("labels")


class Soak:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.truth: dict[int, str] = {}  # video id -> digit (one clip per demo video)
        self.labeled: set[int] = set()
        self.report = SoakReport()
        self.violations = self.report.violations
        self.stall_after = settings.loop_tick_seconds + REFILL_ALLOWANCE_S
        self._stalled: set[tuple[str, int]] = set()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.report, what, getattr(self.report, what) + n)

    def violation(self, what: str, detail: str) -> None:
        self.count(what)
        self.violations.append(f"{what}: {detail}")

    def is_labeled(self, clip_id: int) -> bool:
        with self.lock:
            return clip_id in self.labeled

    def mark_labeled(self, clip_id: int) -> None:
        with self.lock:
            self.labeled.add(clip_id)

    def note_starved(self, who: str, seconds: float) -> None:
        with self.lock:
            self.report.longest_starved_s = max(self.report.longest_starved_s, seconds)
            spell = (who, int(time.monotonic() - seconds))  # one stall per starved spell
            if seconds > self.stall_after and spell not in self._stalled:
                self._stalled.add(spell)
                self.report.stalls += 1
                self.violations.append(f"stall: {who} starved {seconds:.1f} s")

    def offerable_for(self, who: str) -> int:
        """Clips the queue could offer this annotator now (offerable and not skipped by
        them): the database's view, independent of the service's own bookkeeping."""
        mine = aliased(QueueItem)
        skipped_by_me = (
            select(mine.id)
            .where(mine.clip_id == Clip.id, mine.status == "skipped", mine.annotator == who)
            .exists()
        )
        where = offerable(
            now=utcnow(),
            cooldown_s=self.settings.skip_cooldown_seconds,
            queued_too=True,
        )
        with session_scope(self.settings.database_url) as s:
            q = select(func.count(Clip.id)).where(*where, ~skipped_by_me)
            return int(s.scalar(q) or 0)


class QueueWatcher(threading.Thread):
    """Reads the queue every ``every_s``: empty observations, and refill jobs that queued
    nothing although a clip was offerable from before they started until now."""

    def __init__(self, soak: Soak, *, every_s: float = 0.25) -> None:
        super().__init__(name="queue-watcher", daemon=True)
        self.soak, self.every_s = soak, every_s
        self.last_refill = 0
        self.empty_since: float | None = None

    def run(self) -> None:
        try:
            while not self.soak.stop.is_set():
                self.look()
                time.sleep(self.every_s)
        except Exception as exc:
            self.soak.violations.append(f"queue watcher crashed: {exc!r}")

    def look(self) -> None:
        settings = self.soak.settings
        now = utcnow()
        with session_scope(settings.database_url) as s:
            queued = s.scalar(
                select(func.count(QueueItem.id)).where(
                    QueueItem.status == "queued", QueueItem.lane == "al"
                )
            )
            where = offerable(now=now, cooldown_s=settings.skip_cooldown_seconds)
            waiting = list(s.scalars(select(Clip.id).where(*where)))
            refills = list(
                s.scalars(
                    select(Job)
                    .where(Job.kind == "refill", Job.id > self.last_refill)
                    .where(Job.status.in_(("succeeded", "failed")))
                    .order_by(Job.id)
                )
            )
            # Refills finish in id order almost always; a late one is looked at on its own.
            for job in refills:
                self.last_refill = max(self.last_refill, job.id)
                if job.message == "queued 0" and job.started_at is not None and waiting:
                    held = _offerable_throughout(s, waiting, since=job.started_at, soak=self.soak)
                    if held:
                        self.soak.violation(
                            "empty_refills",
                            f"refill job {job.id} queued nothing; clips {held[:5]} were "
                            "offerable before it started and after it ended",
                        )
        t = time.monotonic()
        if not queued and waiting:
            self.soak.count("empty_observations")
            self.empty_since = self.empty_since or t
            with self.soak.lock:
                report = self.soak.report
                report.longest_empty_s = max(report.longest_empty_s, t - self.empty_since)
        else:
            self.empty_since = None


def _offerable_throughout(
    session: Any, clip_ids: list[int], *, since: Any, soak: Soak
) -> list[int]:
    """Those of ``clip_ids`` (offerable now) that were offerable from ``since`` on too: ready
    before it, and neither skipped within a cool-down of it nor holding a lease that ran out
    after it (a labeled or parked clip never becomes offerable again)."""
    cooldown = timedelta(seconds=soak.settings.skip_cooldown_seconds)
    busy = set(
        session.scalars(
            select(QueueItem.clip_id).where(
                QueueItem.clip_id.in_(clip_ids),
                ((QueueItem.status == "skipped") & (QueueItem.skipped_at > since - cooldown))
                | ((QueueItem.status == "expired") & (QueueItem.lease_expires_at > since)),
            )
        )
    )
    ready_before = set(
        session.scalars(select(Clip.id).where(Clip.id.in_(clip_ids), Clip.created_at < since))
    )
    return sorted(ready_before - busy)


def _upload(client: Any, rows: list[dict[str, str]], folder: Path, soak: Soak) -> list[int]:
    """Upload and wait; the oracle knows each video's digit from the moment it is accepted
    (its clips may reach the queue before this returns). Returns the new clip ids."""
    videos = []
    for row in rows:
        video = client.upload_video(folder / row["file"])
        soak.truth[int(video["id"])] = row["digit"]
        videos.append(video)
    done = client.wait_for_videos([v["id"] for v in videos], timeout_s=300)
    return [int(c["id"]) for v in done for c in client.list_clips(video_id=v["id"])]


def _versions(client: Any) -> list[dict[str, Any]]:
    return list(client.request("GET", "/api/v1/models").json())


def _settled(settings: Settings) -> bool:
    """Nothing is left to offer anyone and nothing is queued or leased."""
    with session_scope(settings.database_url) as s:
        where = offerable(now=utcnow() + timedelta(days=1), cooldown_s=0.0, queued_too=True)
        left = s.scalar(select(func.count(Clip.id)).where(*where))
        open_rows = s.scalar(
            select(func.count(QueueItem.id)).where(QueueItem.status.in_(("queued", "leased")))
        )
        return not left and not open_rows


def run_soak(
    settings: Settings,
    demo_labels: Path,
    *,
    skip_rates: tuple[float, ...] = (0.0, 0.4, 0.8),
    first_videos: int = 30,
    max_seconds: float = 300.0,
    seed: int = 0,
) -> SoakReport:
    """Run the soak on the running-stack settings; returns what it measured."""
    settings = soak_settings(settings)
    rows = list(csv.DictReader(demo_labels.open()))
    soak = Soak(settings)
    started = time.monotonic()
    with running_stack(settings, ["api", "worker", "beat"]) as (_, client):
        for d in range(10):
            client.request("POST", "/api/v1/tags", json={"name": str(d), "group": "digit"})
        _upload(client, rows[:first_videos], demo_labels.parent, soak)
        tokens = {}
        with session_scope(settings.database_url) as s:
            for i in range(len(skip_rates)):
                tokens[f"ann{i}"] = create_token(s, name=f"ann{i}", role="annotator")
        annotators = [
            Annotator(name, tokens[name], rate, soak=soak, seed=seed * 100 + i)
            for i, (name, rate) in enumerate(zip(tokens, skip_rates, strict=True))
        ]
        watcher = QueueWatcher(soak)
        watcher.start()
        for a in annotators:
            a.start()
        new_clips: list[int] = []
        try:
            # New videos arrive once a model serves: their clips must be scored and queued.
            wait_until(
                lambda: any(v["status"] == "promoted" for v in _versions(client)),
                timeout_s=max_seconds,
                poll_s=0.5,
                what="the first promoted version",
            )
            new_clips = _upload(client, rows[first_videos:], demo_labels.parent, soak)
            soak.report.new_clips = len(new_clips)
            # Rounds after the first are rejected; promote one by hand, then roll back.
            wait_until(
                lambda: any(v["status"] == "ready" for v in _versions(client)),
                timeout_s=max_seconds,
                poll_s=0.5,
                what="a rejected round",
            )
            first = next(v for v in _versions(client) if v["status"] == "promoted")
            rejected = max(
                (v for v in _versions(client) if v["status"] == "ready"), key=lambda v: v["id"]
            )
            client.request("POST", f"/api/v1/models/{rejected['id']}/promote")
            time.sleep(settings.loop_tick_seconds * 2)
            client.request("POST", f"/api/v1/models/{first['id']}/promote")
            soak.report.manual_promotions = 2
            deadline = started + max_seconds
            while time.monotonic() < deadline and not _settled(settings):
                time.sleep(1.0)
        finally:
            soak.stop.set()
            for a in annotators:
                a.join(timeout=30)
            watcher.join(timeout=30)
        soak.report.seconds = time.monotonic() - started
        _check_database(settings, soak.report, new_clips)
    return soak.report


def _check_database(settings: Settings, report: SoakReport, new_clips: list[int]) -> None:
    """What the database says at the end: new clips reached the queue, rounds had labels."""
    with session_scope(settings.database_url) as s:
        queued_or_labeled = set(
            s.scalars(select(QueueItem.clip_id).where(QueueItem.clip_id.in_(new_clips)))
        ) | set(s.scalars(select(Label.clip_id).where(Label.clip_id.in_(new_clips))))
        report.new_clips_queued_or_labeled = len(queued_or_labeled & set(new_clips))
        rounds = list(s.scalars(select(Job).where(Job.kind == "train").order_by(Job.id)))
        report.rounds = len(rounds)
        report.rounds_without_new_labels = sum(
            1 for j in rounds if int((j.params or {}).get("new_labels", 0)) < 1
        )
        # train_round ends its job "vN: score ... (promoted)" or "(kept vM)".
        report.promoted_rounds = sum(1 for j in rounds if "(promoted)" in (j.message or ""))
        report.rejected_rounds = sum(1 for j in rounds if "(kept v" in (j.message or ""))
        report.parked = int(
            s.scalar(select(func.count(Clip.id)).where(Clip.needs_review.is_(True))) or 0
        )
