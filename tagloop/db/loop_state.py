"""The loop's reads and its jobs: what ``tagloop.pipeline.loop`` decides on, and the job rows
its plans create. The rule itself (what is due, which event leads to which jobs) lives in
``tagloop.pipeline.loop``; this module only reads the database and writes job rows.

Each action of the loop is one job of its kind at a time: the job table is the lock, so the
state counts a queued or running job with a fresh heartbeat as live (``tagloop.db.jobs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, aliased

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import queue as queue_repo
from tagloop.db.models import Clip, Job, Label, Prediction, QueueItem, utcnow

TRAIN_JOB = "train"
SCORE_JOB = "score"
REFILL_JOB = "refill"
PRETRAIN_JOB = "pretrain"


@dataclass(frozen=True)
class LoopState:
    """What the decision needs, read from the database at one moment."""

    promoted: bool
    queued: int
    offerable_unqueued: bool
    unscored: bool
    new_labels: int
    seconds_since_round: float | None
    training_active: bool
    scoring_active: bool
    refill_active: bool
    seconds_since_refill: float | None
    # Clips that became ready since the last pretraining run started, how many it saw when it
    # started (0: no run, or one from before this was recorded), and whether one runs.
    new_clips_since_pretrain: int = 0
    clips_at_last_pretrain: int = 0
    pretrain_active: bool = False


# --- Reading the state ---------------------------------------------------------------------


def offerable(
    *,
    now: datetime,
    cooldown_s: float,
    queued_too: bool = False,
    skipped: bool | None = None,
) -> list[ColumnElement[bool]]:
    """Conditions on ``Clip`` for clips the AL queue may offer: ready, in the pool, unlabeled,
    not parked, not leased, not skipped within the cool-down, and not queued already (unless
    ``queued_too``: a refill re-ranks the queued clips with the rest). ``skipped``: only
    clips somebody skipped before (True) or only clips nobody skipped (False)."""
    row = aliased(QueueItem)
    ever_skipped = select(row.id).where(row.clip_id == Clip.id, row.status == "skipped").exists()
    extra = [] if skipped is None else [ever_skipped if skipped else ~ever_skipped]
    open_statuses = ("leased",) if queued_too else ("queued", "leased")
    open_row = select(row.id).where(row.clip_id == Clip.id, row.status.in_(open_statuses)).exists()
    cooling = (
        select(row.id)
        .where(
            row.clip_id == Clip.id,
            row.status == "skipped",
            row.skipped_at > now - timedelta(seconds=cooldown_s),
        )
        .exists()
    )
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    return [
        Clip.status == "ready",
        Clip.tensor_uri.is_not(None),
        Clip.split == "pool",
        Clip.needs_review.is_(False),
        ~labeled,
        ~open_row,
        ~cooling,
        *extra,
    ]


def has_offerable(session: Session, *, settings: Settings, now: datetime | None = None) -> bool:
    where = offerable(now=now or utcnow(), cooldown_s=settings.skip_cooldown_seconds)
    return session.scalar(select(Clip.id).where(*where).limit(1)) is not None


def has_unscored(session: Session, *, version_id: int) -> bool:
    """Whether ``version_id`` has not scored some ready, unlabeled clip."""
    scored = (
        select(Prediction.id)
        .where(Prediction.clip_id == Clip.id, Prediction.model_version_id == version_id)
        .exists()
    )
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    q = select(Clip.id).where(
        Clip.status == "ready", Clip.tensor_uri.is_not(None), ~labeled, ~scored
    )
    return session.scalar(q.limit(1)) is not None


def last_round(session: Session) -> Job | None:
    return session.scalar(select(Job).where(Job.kind == TRAIN_JOB).order_by(Job.id.desc()).limit(1))


def label_watermark(session: Session) -> int:
    """The newest label id now: a round trains on labels up to about here."""
    return int(session.scalar(select(func.max(Label.id))) or 0)


def new_labels_since(session: Session, watermark: int) -> int:
    """Labels on pool clips (holdout labels never train) newer than ``watermark``."""
    q = (
        select(func.count(Label.id))
        .join(Clip, Clip.id == Label.clip_id)
        .where(Label.id > watermark, Clip.split == "pool")
    )
    return int(session.scalar(q) or 0)


def _age(then: datetime | None, now: datetime) -> float | None:
    if then is None:
        return None
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=now.tzinfo)
    return (now - then).total_seconds()


def read_state(session: Session, *, settings: Settings, now: datetime | None = None) -> LoopState:
    now = now or utcnow()
    stale = settings.stale_job_seconds
    promoted = version_repo.promoted_version(session)
    round_job = last_round(session)
    watermark = int((round_job.params or {}).get("label_watermark", 0)) if round_job else 0
    refill_job = job_repo.latest_job(session, kind=REFILL_JOB)
    pretrain_on = settings.pretrain_after_new_clips > 0  # else skip its two queries
    return LoopState(
        promoted=promoted is not None and bool(promoted.artifact_uri),
        queued=queue_repo.count_queued(session),
        offerable_unqueued=has_offerable(session, settings=settings, now=now),
        unscored=promoted is not None and has_unscored(session, version_id=promoted.id),
        new_labels=new_labels_since(session, watermark),
        seconds_since_round=_age(round_job.created_at, now) if round_job else None,
        training_active=job_repo.live_job(session, kind=TRAIN_JOB, stale_s=stale) is not None,
        scoring_active=job_repo.live_job(session, kind=SCORE_JOB, stale_s=stale) is not None,
        refill_active=job_repo.live_job(session, kind=REFILL_JOB, stale_s=stale) is not None,
        seconds_since_refill=_age(refill_job.created_at, now) if refill_job else None,
        **pretrain_progress(session, on=pretrain_on),
        pretrain_active=pretrain_on
        and job_repo.live_job(session, kind=PRETRAIN_JOB, stale_s=stale) is not None,
    )


def queued_count(session: Session) -> int:
    """Rows queued in the active-learning lane: the hot routes' one cheap read."""
    return queue_repo.count_queued(session)


def has_promoted_version(session: Session) -> bool:
    """Whether some version is promoted (its scores rank the queue)."""
    return version_repo.promoted_version(session) is not None


def live_job(session: Session, *, kind: str, settings: Settings) -> Job | None:
    """The live job of this kind (queued or running, heartbeat fresher than
    ``stale_job_seconds``), if any."""
    return job_repo.live_job(session, kind=kind, stale_s=settings.stale_job_seconds)


def _pretrainable_clips(session: Session, *, after: int = 0) -> int:
    """Ready clips with sound and an id above ``after``: the clips pretraining reads."""
    q = select(func.count(Clip.id)).where(
        Clip.id > after, Clip.status == "ready", Clip.has_audio.is_(True)
    )
    return int(session.scalar(q) or 0)


def pretrain_progress(session: Session, *, on: bool = True) -> dict[str, int]:
    """``LoopState``'s pretraining counts from one read of the last run (zeros when ``on`` is
    False: automatic pretraining is off, so neither query runs).

    new_clips_since_pretrain: ready clips with sound newer than the last run's clip watermark
    (all, before any run). Only clips with sound count: pretraining learns from picture and
    sound together and reads no other, so a silent pool never starts a run that could only
    fail. clips_at_last_pretrain: the pretrainable clips when that run started (0: none
    recorded)."""
    if not on:
        return {"new_clips_since_pretrain": 0, "clips_at_last_pretrain": 0}
    run = job_repo.latest_job(session, kind=PRETRAIN_JOB)
    params = (run.params or {}) if run else {}
    mark = int(params.get("clip_watermark", 0))
    return {
        "new_clips_since_pretrain": _pretrainable_clips(session, after=mark),
        "clips_at_last_pretrain": int(params.get("pool_clips", 0)),
    }


def new_clips_since_pretrain(session: Session) -> int:
    return pretrain_progress(session)["new_clips_since_pretrain"]


def clips_at_last_pretrain(session: Session) -> int:
    return pretrain_progress(session)["clips_at_last_pretrain"]


# --- Creating the loop's jobs ----------------------------------------------------------------


def create_pretrain_job(session: Session, *, trigger: str) -> Job:
    """A pretraining run's job; its clip watermark is what "new clips" count from next, and
    its pool size what the next run's growth is measured against."""
    mark = int(session.scalar(select(func.max(Clip.id))) or 0)
    params = {
        "trigger": trigger,
        "clip_watermark": mark,
        "pool_clips": _pretrainable_clips(session),
    }
    return job_repo.create_job(session, kind=PRETRAIN_JOB, params=params)


def create_train_job(session: Session, *, trigger: str, new_labels: int | None = None) -> Job:
    """A round's job; its label watermark is what the next round's "new labels" count from."""
    watermark = label_watermark(session)
    if new_labels is None:
        round_job = last_round(session)
        last = int((round_job.params or {}).get("label_watermark", 0)) if round_job else 0
        new_labels = new_labels_since(session, last)
    return job_repo.create_job(
        session,
        kind=TRAIN_JOB,
        params={"trigger": trigger, "new_labels": new_labels, "label_watermark": watermark},
    )


def create_score_job(session: Session) -> Job:
    """A scoring run's job: the promoted version scores what it has not scored."""
    return job_repo.create_job(session, kind=SCORE_JOB, params={})


def create_refill_job(session: Session, *, trigger: str) -> Job:
    """A refill's job: the next batch replaces the queued rows."""
    return job_repo.create_job(session, kind=REFILL_JOB, params={"trigger": trigger})
