"""The loop's rule: which event makes the service train, score, refill the queue or pretrain.

Annotators are served from the active-learning queue (lane ``al``). Every event that changes
what they should see is one function here, named for the event (the table's entry point): it
reads the state (``tagloop.db.loop_state``), creates the jobs that are due and returns them as
a ``LoopPlan``. The caller (an API route, a worker's task, beat's tick) only sends the plan,
through ``tagloop.pipeline.dispatch``. Each action is one job of its kind at a time (the job
table is the lock); each is idempotent, so a duplicate does no harm.

==================================  ========================  ==================================
event                               entry point               plan
==================================  ========================  ==================================
label saved (API)                   ``on_label``              refill, if the queue is low
clip skipped (API)                  ``on_skip``               refill, if the queue is low
``queue/next`` found nothing (API)  ``on_queue_empty``        refill, if some offerable clip is
                                                              not queued (the queue is low for
                                                              that annotator, whatever its size)
clips moved into the holdout (API)  ``on_holdout_marked``     refill, if the queue is low
parked clip reviewed (API)          ``on_clip_reviewed``      refill, if the queue is low
clips ready (media worker)          ``on_clips_ready``        score, if a model is promoted and
                                                              no score job is live; before any
                                                              model, refill if the queue is low
promote or roll back (API)          ``on_promote``            score, as for clips ready
round finished, promoted            ``on_round_finished``     score, as for clips ready
round finished, not promoted        ``on_round_finished``     refill, if the queue is low
pretraining run finished            ``on_pretrain_finished``  refill before any model (the seed
                                                              batch on its embeddings), unless a
                                                              refill is live
score finished (score worker)       ``on_score_finished``     refill, always, even while another
                                                              is live; the scoring task runs it
beat tick (``loop_tick_seconds``)   ``on_tick``               train if due; score if unscored
                                                              clips; refill if low; pretrain if
                                                              due
admin asks for a round (API)        ``on_manual_train``       train; refused while one is live
admin asks for pretraining (API)    ``on_manual_pretrain``    pretrain; refused while one is live
==================================  ========================  ==================================

- **low**: fewer than ``queue_low_water`` rows queued while some offerable clip is not in the
  queue (ready, in the pool, unlabeled, not parked, not leased, not cooling down after a
  skip). A refill ranks by the promoted version's scores, or builds the diverse seed batch
  before any model exists. Clips the ranking version has not scored fill the rest of the
  batch by the seed rule, so a promotion keeps the seed batch until its scores exist. Every
  refill also gives the holdout's own lane back its clips whose skip cool-down is over (the
  loop never ranks that lane; ``tagloop.db.holdout``).
- **refill after an event**: an event never waits for scoring: older scores refill a low queue
  now, and the score job refills again when it ends. The tick leaves a low queue to the score
  job it starts, and refills at most once per ``refill_min_interval_seconds``.
- **score**: the promoted version has not scored some ready, unlabeled clip. A score job
  always ends with a refill (a refill job of its own, trigger ``scored``, created by
  ``on_score_finished`` and run by the score's task), since new scores change the ranking.
- **train (due)**: ``retrain_min_labels`` labels on pool clips arrived since the last round
  started (its label watermark, whatever its outcome), no round is running, and the last one
  started at least ``retrain_every_minutes`` ago. A round without new labels never starts.
- **pretrain (due)**: ``pretrain_after_new_clips`` clips with sound became ready since the last
  run started, and at least ``pretrain_growth`` of that run's pool (``pretrain_after_new_clips``
  0: pretraining runs only on request).
- After every round, promoted or not, the round's task also re-measures the older versions on
  today's holdout labels (``pipeline.holdout_eval.refresh_holdout_metrics``), inline and
  without a job: it changes versions' metrics, not what annotators see, so it is no action of
  the loop.

The tick is the safety net under the event paths: whatever an event missed (a worker that
died, a race between a scoring run and new clips), the next tick sees in the state and acts.
So the queue is empty for at most one tick plus a refill while offerable clips exist.

This module is light on purpose (no torch): the API calls it on its hot routes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db import loop_state as state_db
from tagloop.db.loop_state import (
    PRETRAIN_JOB,
    REFILL_JOB,
    SCORE_JOB,
    TRAIN_JOB,
    LoopState,
    create_pretrain_job,
    create_train_job,
    read_state,
)
from tagloop.errors import Conflict
from tagloop.task_names import PRETRAIN, REFILL_QUEUE, SCORE, TRAIN


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


# --- Turning decisions into jobs -------------------------------------------------------------


@dataclass(frozen=True)
class LoopPlan:
    """Jobs created for the caller to send, as (task name, job id)."""

    tasks: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tasks)


def _plan(session: Session, actions: LoopActions, *, trigger: str, new_labels: int) -> LoopPlan:
    tasks: list[tuple[str, int]] = []
    if actions.train:
        job = create_train_job(session, trigger=trigger, new_labels=new_labels)
        tasks.append((TRAIN, job.id))
    if actions.pretrain:
        tasks.append((PRETRAIN, create_pretrain_job(session, trigger=trigger).id))
    if actions.score:
        tasks.append((SCORE, state_db.create_score_job(session).id))
    if actions.refill:
        job = state_db.create_refill_job(session, trigger=trigger)
        tasks.append((REFILL_QUEUE, job.id))
    session.flush()
    return LoopPlan(tuple(tasks))


# --- The events: one function per row of the module's table ---------------------------------


def on_label(session: Session, *, settings: Settings) -> LoopPlan:
    """A label was saved (API): refill, if the queue is low."""
    return _refill_if_low(session, settings=settings, trigger="label")


def on_skip(session: Session, *, settings: Settings) -> LoopPlan:
    """A clip was skipped (API): refill, if the queue is low."""
    return _refill_if_low(session, settings=settings, trigger="skip")


def on_queue_empty(session: Session, *, settings: Settings) -> LoopPlan:
    """``queue/next`` found nothing for an annotator (API): the queue is low for them however
    many rows are queued (every queued clip may be one they skipped), so refill if some
    offerable clip is not queued."""
    return _refill_if_low(session, settings=settings, trigger="queue_empty", caller_starved=True)


def on_holdout_marked(session: Session, *, settings: Settings) -> LoopPlan:
    """Clips moved into the holdout (API) and so left the active-learning queue: refill, if
    the queue is low."""
    return _refill_if_low(session, settings=settings, trigger="holdout")


def on_clip_reviewed(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin un-parked a clip (API): it is offerable again, so refill, if the queue is
    low."""
    return _refill_if_low(session, settings=settings, trigger="review")


def on_clips_ready(session: Session, *, settings: Settings) -> LoopPlan:
    """A video's clips are ready (media worker): the promoted version scores them (they enter
    the queue at their rank); before any model, a low queue takes them into its seed batch."""
    return _score_or_refill(session, settings=settings, trigger="new_clips")


def on_promote(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin promoted a version or rolled back to one (API): it scores what it has not
    scored (the score job refills at its end)."""
    return _score_or_refill(session, settings=settings, trigger="promote")


def on_round_finished(session: Session, *, settings: Settings, promoted: bool) -> LoopPlan:
    """A training round ended (train worker). Promoted: the new version scores what it has not
    scored. Not promoted: the scores stand, so refill if the queue is low."""
    if promoted:
        return _score_or_refill(session, settings=settings, trigger="promoted")
    return _refill_if_low(session, settings=settings, trigger="round_rejected")


def on_pretrain_finished(session: Session, *, settings: Settings) -> LoopPlan:
    """A pretraining run finished (pretrain worker): before any model the seed batch is
    k-center on its embeddings, so rebuild it now (once a model serves, its scores rank the
    queue, and a live refill will read the new embeddings anyway)."""
    if state_db.has_promoted_version(session):
        return LoopPlan()
    if state_db.live_job(session, kind=REFILL_JOB, settings=settings):
        return LoopPlan()
    return _plan(session, LoopActions(refill=True), trigger="pretrained", new_labels=0)


def on_score_finished(session: Session, *, settings: Settings) -> LoopPlan:
    """A scoring run ended (score worker): new scores, new ranks, so always refill, even
    while another refill is live (that one may have read the scores from before this run).
    The score's task runs this refill itself, in its own process."""
    job = state_db.create_refill_job(session, trigger="scored")
    session.flush()
    return LoopPlan(((REFILL_QUEUE, job.id),))


def on_tick(session: Session, *, settings: Settings, now: datetime | None = None) -> LoopPlan:
    """Beat's tick, every ``loop_tick_seconds``: everything the state says is due."""
    state = read_state(session, settings=settings, now=now)
    actions = decide(state, LoopPolicy.from_settings(settings))
    return _plan(session, actions, trigger="tick", new_labels=state.new_labels)


def on_manual_train(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin asks for a round on all labels so far (API): one round at a time, so a live
    one refuses it (``Conflict`` ``training_running``)."""
    running = state_db.live_job(session, kind=TRAIN_JOB, settings=settings)
    if running is not None:
        raise Conflict(
            f"training round job {running.id} is {running.status}; wait for it to finish",
            code="training_running",
        )
    return LoopPlan(((TRAIN, create_train_job(session, trigger="manual").id),))


def on_manual_pretrain(session: Session, *, settings: Settings) -> LoopPlan:
    """An admin asks for a pretraining run (API): one at a time (``Conflict``
    ``pretrain_running``)."""
    running = state_db.live_job(session, kind=PRETRAIN_JOB, settings=settings)
    if running is not None:
        raise Conflict(
            f"pretraining job {running.id} is {running.status}; wait for it to finish",
            code="pretrain_running",
        )
    return LoopPlan(((PRETRAIN, create_pretrain_job(session, trigger="manual").id),))


# --- What several events share ------------------------------------------------------------


def _refill_if_low(
    session: Session,
    *,
    settings: Settings,
    trigger: str,
    caller_starved: bool = False,
    now: datetime | None = None,
) -> LoopPlan:
    """Refill a low queue (a label, a skip, an empty answer, a rejected round, ...).

    ``caller_starved``: the queue had nothing for this annotator (every queued clip is one
    they skipped), so a refill is due however many rows are queued. Otherwise the cheap count
    comes first, so the hot routes pay one indexed COUNT while the queue is healthy."""
    policy = LoopPolicy.from_settings(settings)
    if not caller_starved and state_db.queued_count(session) >= max(1, policy.low_water):
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


def _score_or_refill(session: Session, *, settings: Settings, trigger: str) -> LoopPlan:
    """Score what the promoted version has not scored (the job refills at its end); before
    any model, refill a low queue instead."""
    if not state_db.has_promoted_version(session):
        return _refill_if_low(session, settings=settings, trigger=trigger)
    if state_db.live_job(session, kind=SCORE_JOB, settings=settings):
        return LoopPlan()  # the running job loops until nothing is left unscored
    return _plan(session, LoopActions(score=True), trigger=trigger, new_labels=0)
