"""Job progress for long work (ingest, training, scoring)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import CallerDep, SessionDep
from services.api.schemas import JobOut, PathId
from tagloop.db import jobs as job_repo

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: PathId, _: CallerDep, session: SessionDep) -> JobOut:
    return JobOut.model_validate(job_repo.get_job(session, job_id))
