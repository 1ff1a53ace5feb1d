"""Model registry: start a training round, list versions, promote or roll back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict

from services.api.deps import AdminDep, CallerDep, SenderDep, SessionDep
from tagloop.db import jobs as job_repo
from tagloop.db import model_versions as version_repo
from tagloop.task_names import TRAIN

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    vocabulary: list[Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    n_train: int
    created_at: datetime


class JobAccepted(BaseModel):
    job_id: int


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def start_training(_: AdminDep, session: SessionDep, sender: SenderDep) -> JobAccepted:
    """Queue a training round on all labels so far; follow it at /api/v1/jobs/{job_id}."""
    job = job_repo.create_job(session, kind="train", params={})
    session.commit()
    sender.send(TRAIN, job.id)
    return JobAccepted(job_id=job.id)


@router.get("", response_model=list[ModelVersionOut])
def list_models(_: CallerDep, session: SessionDep) -> list[ModelVersionOut]:
    return [ModelVersionOut.model_validate(v) for v in version_repo.list_versions(session)]


@router.post("/{version_id}/promote", response_model=ModelVersionOut)
def promote_model(version_id: int, _: AdminDep, session: SessionDep) -> ModelVersionOut:
    """Serve this version (the current one is retired); promoting an older one rolls back."""
    version = version_repo.promote(session, version_id)
    session.commit()
    return ModelVersionOut.model_validate(version)
