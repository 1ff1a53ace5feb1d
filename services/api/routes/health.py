"""Liveness (no auth) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text

from services.api.deps import CallerDep, SessionDep
from tagloop.db.models import Clip, Job, Video

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics")
def metrics(_: CallerDep, session: SessionDep) -> Response:
    """Gauges read from the database at scrape time, so every API replica agrees."""
    registry = CollectorRegistry()
    videos = Gauge("tagloop_videos", "Videos by status", ["status"], registry=registry)
    for status, n in session.execute(select(Video.status, func.count()).group_by(Video.status)):
        videos.labels(status=status).set(n)
    Gauge("tagloop_clips", "Clips stored", registry=registry).set(
        session.scalar(select(func.count()).select_from(Clip)) or 0
    )
    jobs = Gauge("tagloop_jobs", "Jobs by kind and status", ["kind", "status"], registry=registry)
    for kind, status, n in session.execute(
        select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    ):
        jobs.labels(kind=kind, status=status).set(n)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
