"""The loop's state machine: what makes the service train, score and refill the queue.

Annotators are served from the active-learning queue (lane ``al``). Every event that changes
what they should see leads to at most three actions. Each action is one job of its kind at a
time (the job table is the lock); each is idempotent, so a duplicate does no harm.

=====================================  =====================================================
event                                  action
=====================================  =====================================================
label or skip (API)                    refill, if the queue is low
``queue/next`` found nothing (API)     refill, if the queue is low
clips ready (media worker)             score (a model is promoted), else refill if low
promote or roll back (round or admin)  score what that version has not scored, then refill
pretraining run finished               rebuild the seed batch on its embeddings (no model yet)
round not promoted                     refill, if the queue is low
beat tick, every ``loop_tick_seconds``   train if due; score if unscored clips; refill if low;
                                       pretrain if ``pretrain_after_new_clips`` clips are new
                                       and ``pretrain_growth`` of the last run's pool
=====================================  =====================================================

- **low**: fewer than ``queue_low_water`` rows queued while some offerable clip is not in the
  queue (ready, in the pool, unlabeled, not parked, not leased, not cooling down after a
  skip). A refill ranks by the promoted version's scores, or builds the diverse seed batch
  before any model exists. Clips the ranking version has not scored fill the rest of the
  batch by the seed rule, so a promotion keeps the seed batch until its scores exist.
- **score**: the promoted version has not scored some ready, unlabeled clip. A score job
  always ends with a refill (a refill job of its own, trigger ``scored``, run by the score's
  task), since new scores change the ranking.
- **train (due)**: ``retrain_min_labels`` labels on pool clips arrived since the last round
  started (its label watermark, whatever its outcome), no round is running, and the last one
  started at least ``retrain_every_minutes`` ago. A round without new labels never starts.

The tick is the safety net under the event paths: whatever an event missed (a worker that
died, a race between a scoring run and new clips), the next tick sees in the state and acts.
So the queue is empty for at most one tick plus a refill while offerable clips exist.

This module is light on purpose (no torch): the API calls it on its hot routes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, aliased

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import queue as queue_repo
from tagloop.db.models import Clip, Job, Label, Prediction, QueueItem, utcnow
from tagloop.errors import Conflict
from tagloop.task_names import PRETRAIN, REFILL_QUEUE, SCORE, TRAIN

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


@dataclass(frozen=True)
class LoopActions:
    train: bool = False
    score: bool = False
    refill: bool = False
    pretrain: bool = False


@dataclass(frozen=True)
class LoopPolicy:
    low_water: int
    min_labels: int
    retrain_every_s: float
    refill_min_interval_s: float
    pretrain_after_new_clips: int = 0  # 0: pretraining only on request
    pretrain_growth: float = 0.0  # and this fraction of the last run's clips must be new

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopPolicy:
        return cls(
            low_water=settings.queue_low_water,
            min_labels=settings.retrain_min_labels,
            retrain_every_s=settings.retrain_every_minutes * 60.0,
            refill_min_interval_s=settings.refill_min_interval_seconds,
            pretrain_after_new_clips=settings.pretrain_after_new_clips,
            pretrain_growth=settings.pretrain_growth,
        )


def train_due(state: LoopState, policy: LoopPolicy) -> bool:
    spaced = (
        state.seconds_since_round is None or state.seconds_since_round >= policy.retrain_every_s
    )
    return not state.training_active and spaced and state.new_labels >= max(1, policy.min_labels)


def pretrain_due(state: LoopState, policy: LoopPolicy) -> bool:
    needed = max(
        policy.pretrain_after_new_clips,
        math.ceil(policy.pretrain_growth * state.clips_at_last_pretrain),
    )
    return (
        policy.pretrain_after_new_clips > 0
        and not state.pretrain_active
        and state.new_clips_since_pretrain >= needed
    )


def queue_low(state: LoopState, policy: LoopPolicy) -> bool:
    return state.queued < max(1, policy.low_water) and state.offerable_unqueued


def decide(state: LoopState, policy: LoopPolicy) -> LoopActions:
    """The tick's decision: a pure function of the state (see the module's table)."""
    score = state.promoted and state.unscored and not state.scoring_active
    recent = (
        state.seconds_since_refill is not None
        and state.seconds_since_refill < policy.refill_min_interval_s
    )
    refill = queue_low(state, policy) and not state.refill_active and not recent
    # A score job refills when it ends, so asking for both would refill twice.
    return LoopActions(
        train=train_due(state, policy),
        score=score,
        refill=refill and not score,
        pretrain=pretrain_due(state, policy),
    )


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


# --- Turning decisions into jobs -------------------------------------------------------------


@dataclass(frozen=True)
class LoopPlan:
    """Jobs created for the caller to send, as (task name, job id)."""

    tasks: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tasks)


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


def _plan(session: Session, actions: LoopActions, *, trigger: str, new_labels: int) -> LoopPlan:
    tasks: list[tuple[str, int]] = []
    if actions.train:
        job = create_train_job(session, trigger=trigger, new_labels=new_labels)
        tasks.append((TRAIN, job.id))
    if actions.pretrain:
        tasks.append((PRETRAIN, create_pretrain_job(session, trigger=trigger).id))
    if actions.score:
        tasks.append((SCORE, job_repo.create_job(session, kind=SCORE_JOB, params={}).id))
    if actions.refill:
        job = job_repo.create_job(session, kind=REFILL_JOB, params={"trigger": trigger})
        tasks.append((REFILL_QUEUE, job.id))
    session.flush()
    return LoopPlan(tuple(tasks))


def plan_tick(session: Session, *, settings: Settings, now: datetime | None = None) -> LoopPlan:
    """Beat's tick: everything the state says is due."""
    state = read_state(session, settings=settings, now=now)
    actions = decide(state, LoopPolicy.from_settings(settings))
    return _plan(session, actions, trigger="tick", new_labels=state.new_labels)


def plan_refill_if_low(
    session: Session,
    *,
    settings: Settings,
    trigger: str,
    caller_starved: bool = False,
    now: datetime | None = None,
) -> LoopPlan:
    """After a label, a skip, an empty answer or a rejected round: refill a low queue.

    ``caller_starved``: the queue had nothing for this annotator (every queued clip is one
    they skipped), so a refill is due however many rows are queued. Otherwise the cheap count
    comes first, so the hot routes pay one indexed COUNT while the queue is healthy."""
    policy = LoopPolicy.from_settings(settings)
    if not caller_starved and queue_repo.count_queued(session) >= max(1, policy.low_water):
        return LoopPlan()
    state = read_state(session, settings=settings, now=now)
    if caller_starved:
        policy = replace(policy, low_water=state.queued + 1)
    actions = decide(state, policy)
    # Unlike the tick, an event never waits for scoring: older scores refill now, and the
    # score job refills again when it ends.
    refill = actions.refill or (
        actions.score and queue_low(state, policy) and not state.refill_active
    )
    return _plan(session, LoopActions(refill=refill), trigger=trigger, new_labels=0)


def plan_pretrained(session: Session, *, settings: Settings) -> LoopPlan:
    """A pretraining run finished: before any model the seed batch is k-center on its
    embeddings, so rebuild it now (once a model serves, its scores rank the queue)."""
    if version_repo.promoted_version(session) is not None:
        return LoopPlan()
    if job_repo.live_job(session, kind=REFILL_JOB, stale_s=settings.stale_job_seconds):
        return LoopPlan()
    return _plan(session, LoopActions(refill=True), trigger="pretrained", new_labels=0)


def plan_score(session: Session, *, settings: Settings, trigger: str) -> LoopPlan:
    """New clips are ready, or a version was promoted: score what the promoted version has
    not scored (the job refills at its end); before any model, refill a low queue instead."""
    promoted = version_repo.promoted_version(session)
    if promoted is None:
        return plan_refill_if_low(session, settings=settings, trigger=trigger)
    if job_repo.live_job(session, kind=SCORE_JOB, stale_s=settings.stale_job_seconds):
        return LoopPlan()  # the running job loops until nothing is left unscored
    return _plan(session, LoopActions(score=True), trigger=trigger, new_labels=0)


def plan_manual_train(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin asks for a round on all labels so far: one round at a time, so a live one
    refuses it (``Conflict`` ``training_running``)."""
    running = job_repo.live_job(session, kind=TRAIN_JOB, stale_s=settings.stale_job_seconds)
    if running is not None:
        raise Conflict(
            f"training round job {running.id} is {running.status}; wait for it to finish",
            code="training_running",
        )
    return LoopPlan(((TRAIN, create_train_job(session, trigger="manual").id),))


def plan_manual_pretrain(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin asks for a pretraining run: one at a time (``Conflict`` ``pretrain_running``)."""
    running = job_repo.live_job(session, kind=PRETRAIN_JOB, stale_s=settings.stale_job_seconds)
    if running is not None:
        raise Conflict(
            f"pretraining job {running.id} is {running.status}; wait for it to finish",
            code="pretrain_running",
        )
    return LoopPlan(((PRETRAIN, create_pretrain_job(session, trigger="manual").id),))
