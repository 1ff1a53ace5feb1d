"""Thin task wrappers: parse ids, call one tagloop.pipeline function, map errors. What follows
a task (scores, refills) is the loop's to say: the task calls the event's ``loop.on_*`` and
sends the plan through ``tagloop.pipeline.dispatch``.

InvalidMedia never reaches here (the pipeline ends such a video ``failed`` with its code);
TransientError is retried with backoff; anything else fails the video with a code after the
last retry, so no video is left in ``processing``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tagloop import pipeline
from tagloop.config import Settings, get_settings
from tagloop.db.engine import session_scope
from tagloop.errors import TransientError
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import JobTask, dispatch, send_jobs
from tagloop.task_names import (
    LOOP_TICK,
    PRETRAIN,
    PROCESS_VIDEO,
    RECOVER_STALE,
    REFILL_QUEUE,
    SCORE,
    SWEEP_BLOBS,
    TASK_QUEUES,
    TRAIN,
)
from workers.celery_app import app

log = logging.getLogger(__name__)


@app.task(
    name=PROCESS_VIDEO,
    bind=True,
    acks_late=True,
    autoretry_for=(TransientError,),
    retry_backoff=True,
    max_retries=5,
)
def process_video(self: Task, video_id: int, job_id: int) -> str:
    settings = get_settings()
    try:
        status = pipeline.process_video(
            settings=settings,
            video_id=int(video_id),
            job_id=int(job_id),
            task_id=self.request.id,
        )
    except TransientError:
        raise
    except Exception as exc:
        code, message = pipeline.describe_error(exc)
        log.exception("video %s failed", video_id)
        pipeline.mark_failed(
            settings=get_settings(),
            video_id=int(video_id),
            job_id=int(job_id),
            code=code,
            message=message,
        )
        return "failed"
    if status == "ready":
        with session_scope(settings.database_url) as session:
            dispatch(session, SENDER, loop.on_clips_ready(session, settings=settings))
    return status


@app.task(name=RECOVER_STALE)
def recover_stale() -> int:
    """Re-enqueue video jobs whose worker died (run by beat every few seconds/minutes)."""
    settings = get_settings()
    requeue = pipeline.recover_stale_jobs(settings=settings)
    tasks = [JobTask(PROCESS_VIDEO, job_id, (video_id, job_id)) for video_id, job_id in requeue]
    with session_scope(settings.database_url) as session:
        send_jobs(session, SENDER, tasks)
    return len(requeue)


@app.task(name=SWEEP_BLOBS)
def sweep_blobs() -> int:
    """Remove blobs no row references (beat, every ``blob_sweep_every_minutes``); returns
    how many were removed."""
    from tagloop.pipeline.sweep import sweep_orphan_blobs

    settings = get_settings()
    report = sweep_orphan_blobs(settings=settings, older_than_s=settings.blob_sweep_min_age_seconds)
    return report.removed


@app.task(name=TRAIN, bind=True, acks_late=True)
def train(self: Task, job_id: int) -> int | None:
    """One training round; a promoted version then scores what it has not scored (and
    refills), a rejected one leaves the scores as they are and refills a low queue.

    A failure ends the job ``failed`` with a code (no retry: new labels start the next)."""
    from tagloop.pipeline.holdout_eval import refresh_holdout_metrics
    from tagloop.pipeline.training import train_round

    settings = get_settings()
    try:
        outcome = train_round(settings=settings, job_id=int(job_id), task_id=self.request.id)
    except Exception as exc:
        _fail(settings, job_id, exc, what="training")
        return None
    with session_scope(settings.database_url) as session:
        plan = loop.on_round_finished(session, settings=settings, promoted=outcome.promoted)
        dispatch(session, SENDER, plan)
    try:  # older versions on today's holdout labels: a failure here must not undo the round
        refresh_holdout_metrics(settings=settings)
    except Exception:
        log.exception("refreshing holdout metrics failed")
    return outcome.version_id


@app.task(name=PRETRAIN, bind=True, acks_late=True)
def pretrain(self: Task, job_id: int) -> str | None:
    """Self-supervised pretraining on the pool; the next round starts from its weights.
    A failure ends the job ``failed`` with a code (no retry: it would fail the same way)."""
    from tagloop.pipeline.pretrain import pretrain_pool

    settings = get_settings()
    try:
        outcome = pretrain_pool(settings=settings, job_id=int(job_id), task_id=self.request.id)
    except Exception as exc:
        _fail(settings, job_id, exc, what="pretraining")
        return None
    with session_scope(settings.database_url) as session:
        dispatch(session, SENDER, loop.on_pretrain_finished(session, settings=settings))
    return str(outcome["artifact_uri"])


@app.task(name=SCORE, bind=True, acks_late=True)
def score(self: Task, job_id: int) -> int:
    """Score what the promoted version has not scored, then refill: new scores, new ranks.
    The refill runs here, as a job of its own, so the loop's state sees it like any other."""
    from tagloop.pipeline.scoring import score_pool

    settings = get_settings()
    try:
        n = score_pool(settings=settings, job_id=int(job_id), task_id=self.request.id)
    except Exception as exc:
        _fail(settings, job_id, exc, what="scoring")
        raise
    # The loop's refill after a score (a job of its own), run here by the refill task below.
    with session_scope(settings.database_url) as session:
        plan = loop.on_score_finished(session, settings=settings)
    for _, refill_job_id in plan.tasks:
        refill_queue(refill_job_id)
    return n


@app.task(name=REFILL_QUEUE, acks_late=True)
def refill_queue(job_id: int | None = None) -> int:
    from tagloop.pipeline.scoring import refill_queue as refill

    settings = get_settings()
    try:
        return refill(settings=settings, job_id=None if job_id is None else int(job_id))
    except Exception as exc:
        if job_id is not None:
            _fail(settings, job_id, exc, what="refill")
        raise


@app.task(name=LOOP_TICK)
def tick() -> int:
    """Beat's entry to the loop: train, score and refill as the state says is due
    (``tagloop.pipeline.loop``). Returns the number of tasks sent."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        plan = loop.on_tick(session, settings=settings)
        dispatch(session, SENDER, plan)
    return len(plan.tasks)


class BrokerSender:
    """The workers' ``dispatch.TaskSender``: this app's broker, by task name."""

    def send(self, name: str, *args: Any) -> str:
        try:
            result = app.send_task(name, args=list(args), queue=TASK_QUEUES[name])
        except Exception as exc:  # kombu raises many connection error types
            raise TransientError(
                f"could not reach the task broker: {exc}", code="broker_unavailable"
            ) from exc
        return str(result.id)


SENDER = BrokerSender()


def _fail(settings: Settings, job_id: int, exc: Exception, *, what: str) -> None:
    code, message = pipeline.describe_error(exc)
    log.exception("%s job %s failed", what, job_id)
    pipeline.fail_job(settings=settings, job_id=int(job_id), code=code, message=message)
