"""Job repository: progress and heartbeats of long work (ingest, train, score)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.db.models import Job, utcnow
from tagloop.errors import NotFound

ACTIVE = ("queued", "running")


def create_job(session: Session, *, kind: str, params: dict[str, Any]) -> Job:
    job = Job(kind=kind, params=params, status="queued", progress=0.0, updated_at=utcnow())
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    return job


def start_job(session: Session, job: Job, *, celery_task_id: str | None) -> None:
    now = utcnow()
    job.status = "running"
    job.attempts += 1
    job.celery_task_id = celery_task_id
    job.started_at = job.started_at or now
    job.updated_at = now


def report_progress(session: Session, job: Job, *, progress: float, message: str) -> None:
    job.progress = max(0.0, min(1.0, progress))
    job.message = message
    job.updated_at = utcnow()


def finish_job(session: Session, job: Job, *, status: str, message: str = "") -> None:
    job.status = status
    if status == "succeeded":
        job.progress = 1.0
    job.message = message or job.message
    job.finished_at = job.updated_at = utcnow()


def find_stale_jobs(
    session: Session, *, older_than: timedelta, now: datetime | None = None
) -> list[Job]:
    """Running jobs whose heartbeat stopped: their worker died or lost the task."""
    cutoff = (now or utcnow()) - older_than
    q = select(Job).where(Job.status == "running", Job.updated_at < cutoff).order_by(Job.id)
    return list(session.scalars(q))


def active_job_for(session: Session, *, kind: str, key: str, value: int) -> Job | None:
    """The queued/running job of ``kind`` whose params[key] == value, if any."""
    q = select(Job).where(Job.kind == kind, Job.status.in_(ACTIVE)).order_by(Job.id.desc())
    for job in session.scalars(q):
        if job.params.get(key) == value:
            return job
    return None


def active_job_for_kind(session: Session, *, kind: str) -> Job | None:
    """A queued or running job of this kind, if any (one training round at a time)."""
    return session.scalar(
        select(Job).where(Job.kind == kind, Job.status.in_(ACTIVE)).order_by(Job.id.desc()).limit(1)
    )


def latest_job(session: Session, *, kind: str) -> Job | None:
    """The newest job of this kind, whatever its status."""
    return session.scalar(select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(1))


def list_jobs_of_kind(session: Session, *, kind: str, limit: int) -> list[Job]:
    """The newest ``limit`` jobs of this kind, newest first."""
    q = select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(limit)
    return list(session.scalars(q))


def live_job(
    session: Session, *, kind: str, stale_s: float, now: datetime | None = None
) -> Job | None:
    """A queued or running job of this kind whose heartbeat is fresher than ``stale_s``.

    A job that stopped beating (its task was lost with a worker or a broker) must not block
    the next one for ever; recovery marks it failed later on its own schedule."""
    cutoff = (now or utcnow()) - timedelta(seconds=stale_s)
    return session.scalar(
        select(Job)
        .where(Job.kind == kind, Job.status.in_(ACTIVE), Job.updated_at > cutoff)
        .order_by(Job.id.desc())
        .limit(1)
    )
