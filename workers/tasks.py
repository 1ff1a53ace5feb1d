"""Thin task wrappers: parse ids, call one tagloop.pipeline function, map errors.

InvalidMedia never reaches here (the pipeline ends such a video ``failed`` with its code);
TransientError is retried with backoff; anything else fails the video with a code after the
last retry, so no video is left in ``processing``.
"""

from __future__ import annotations

import logging

from celery import Task

from tagloop import pipeline
from tagloop.config import Settings, get_settings
from tagloop.errors import TransientError
from tagloop.pipeline.scoring import SCORE_JOB
from tagloop.task_names import (
    PROCESS_VIDEO,
    QUEUE_MEDIA,
    RECOVER_STALE,
    REFILL_QUEUE,
    RETRAIN_IF_DUE,
    SCORE,
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
    try:
        return pipeline.process_video(
            settings=get_settings(),
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


@app.task(name=RECOVER_STALE)
def recover_stale() -> int:
    """Re-enqueue video jobs whose worker died (run by beat every few seconds/minutes)."""
    requeue = pipeline.recover_stale_jobs(settings=get_settings())
    for video_id, job_id in requeue:
        process_video.apply_async(args=[video_id, job_id], queue=QUEUE_MEDIA)
    return len(requeue)


@app.task(name=TRAIN, bind=True, acks_late=True)
def train(self: Task, job_id: int) -> int | None:
    """One training round; then score the pool with the new version if it was promoted,
    and refill the queue either way.

    A failure ends the job ``failed`` with a code (no retry: the next round tries again)."""
    from tagloop.pipeline.training import train_round

    settings = get_settings()
    try:
        outcome = train_round(settings=settings, job_id=int(job_id), task_id=self.request.id)
    except Exception as exc:
        _fail(settings, job_id, exc, what="training")
        return None
    if outcome.promoted:
        score_job = pipeline.create_job(settings=settings, kind=SCORE_JOB)
        (score.si(score_job) | refill_queue.si()).apply_async()
    else:
        # The promoted model's scores still stand; the clips just labeled leave the queue.
        refill_queue.delay()
    return outcome.version_id


@app.task(name=SCORE, bind=True, acks_late=True)
def score(self: Task, job_id: int) -> int:
    from tagloop.pipeline.scoring import score_pool

    settings = get_settings()
    try:
        return score_pool(settings=settings, job_id=int(job_id), task_id=self.request.id)
    except Exception as exc:
        _fail(settings, job_id, exc, what="scoring")
        raise


@app.task(name=REFILL_QUEUE, acks_late=True)
def refill_queue() -> int:
    from tagloop.pipeline.scoring import refill_queue as refill

    return refill(settings=get_settings())


@app.task(name=RETRAIN_IF_DUE)
def retrain_if_due() -> int | None:
    """Beat's entry to the loop: train (-> guarded promote -> score -> refill) when enough
    labels arrived; before the first model, keep a seed batch in the queue."""
    from tagloop.pipeline.training import check_retrain

    job_id, needs_seed = check_retrain(settings=get_settings())
    if job_id is not None:
        train.delay(job_id)
    elif needs_seed:
        refill_queue.delay()
    return job_id


def _fail(settings: Settings, job_id: int, exc: Exception, *, what: str) -> None:
    code, message = pipeline.describe_error(exc)
    log.exception("%s job %s failed", what, job_id)
    pipeline.fail_job(settings=settings, job_id=int(job_id), code=code, message=message)
