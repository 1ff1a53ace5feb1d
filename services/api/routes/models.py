"""Model registry: start a training round, list versions, promote or roll back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from services.api.deps import (
    AdminDep,
    CallerDep,
    SenderDep,
    SessionDep,
    SettingsDep,
    TaskSender,
)
from services.api.schemas import PathId
from tagloop.db import jobs as job_repo
from tagloop.db import model_versions as version_repo
from tagloop.db.models import ModelVersion
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch

router = APIRouter(prefix="/api/v1/models", tags=["models"])


# Metrics with an entry per tag: a version's detail has them, the list does not (with 10,000
# tags each was a 10,000-entry map, about 800 KB per version on every GET /models).
PER_TAG_METRICS = ("ap_per_tag", "positives", "train_positives")


class ModelVersionSummary(BaseModel):
    """A version as GET /models lists it: its size does not grow with the vocabulary.
    ``n_tags``: the vocabulary's size; ``metrics`` without the per-tag maps (``ap_per_tag``,
    ``positives``, ``train_positives``, also under ``holdout``), which GET /models/{id}
    has. ``stop_set`` is summarised (``n_clips``, ``compared_with``): the stored decisions
    stay in the database. ``macro_ap``/``micro_f1`` are on the holdout when it measured the
    version, else on validation; ``stop_kappa``: agreement with the previous version on the
    stop set (the stopping rule, see /api/v1/stats)."""

    id: int
    status: str
    n_tags: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    n_train: int
    created_at: datetime
    macro_ap: float | None = None
    micro_f1: float | None = None
    # Fitted on the holdout (None before it has enough labels): the threshold the labeling
    # queue pre-checks suggestions at, and micro-F1 there (cross-fitted).
    decision_threshold: float | None = None
    micro_f1_fitted: float | None = None
    group_threshold: float | None = None  # the same for a group's likeliest tag
    stop_kappa: float | None = None


class ModelVersionOut(ModelVersionSummary):
    """One version in full: its ``vocabulary`` (``{"name", "group"}`` per model column) and
    every metric, the per-tag maps included."""

    vocabulary: list[Any]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _without_per_tag(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in metrics.items() if k not in PER_TAG_METRICS}
    if isinstance(out.get("holdout"), dict):
        out["holdout"] = _without_per_tag(out["holdout"])
    return out


def version_out(version: ModelVersion, *, summary: bool = False) -> ModelVersionOut:
    """The response body of a version: small multi-label and stopping fields up front;
    ``summary``: without its vocabulary and per-tag metrics (``vocabulary`` is empty)."""
    metrics = dict(version.metrics or {})
    stop_set = metrics.get("stop_set")
    if isinstance(stop_set, dict):
        metrics["stop_set"] = {
            "n_clips": len(stop_set.get("clip_ids") or []),
            "compared_with": stop_set.get("compared_with"),
        }
    holdout = metrics.get("holdout")
    measured = holdout if isinstance(holdout, dict) else metrics
    vocabulary = list(version.vocabulary or [])
    return ModelVersionOut(
        id=version.id,
        status=version.status,
        n_tags=len(vocabulary),
        vocabulary=[] if summary else vocabulary,
        config=dict(version.config or {}),
        metrics=_without_per_tag(metrics) if summary else metrics,
        n_train=version.n_train,
        created_at=version.created_at,
        macro_ap=_number(measured.get("macro_ap")),
        micro_f1=_number(measured.get("micro_f1")),
        decision_threshold=_number((holdout or {}).get("decision_threshold")),
        micro_f1_fitted=_number((holdout or {}).get("micro_f1_fitted")),
        group_threshold=_number((holdout or {}).get("group_threshold")),
        stop_kappa=_number(metrics.get("stop_kappa")),
    )


class JobAccepted(BaseModel):
    job_id: int


def _send_manual(session: Session, sender: TaskSender, plan: loop.LoopPlan) -> JobAccepted:
    """Send the one job an admin asked for. A broker that cannot take it answers 503
    ``broker_unavailable`` and the job ends ``failed``, so a retry is not refused with 409."""
    dispatch(session, sender, plan, raise_unsent=True)
    [(_, job_id)] = plan.tasks
    return JobAccepted(job_id=job_id)


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def start_training(
    _: AdminDep, session: SessionDep, settings: SettingsDep, sender: SenderDep
) -> JobAccepted:
    """Queue a training round on all labels so far; follow it at /api/v1/jobs/{job_id}.
    409 ``training_running`` while a round is queued or running; 503 ``broker_unavailable``
    when its task cannot be sent (the job then ends ``failed``: retry)."""
    return _send_manual(session, sender, loop.on_manual_train(session, settings=settings))


class PretrainRunOut(BaseModel):
    """A pretraining run (its job): params hold ``artifact_uri``, ``n_clips`` and the final
    ``metrics`` once it succeeded."""

    model_config = ConfigDict(from_attributes=True)

    job_id: int
    status: str
    progress: float
    message: str
    params: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


@router.post("/pretrain", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def start_pretraining(
    _: AdminDep, session: SessionDep, settings: SettingsDep, sender: SenderDep
) -> JobAccepted:
    """Queue self-supervised audio-visual pretraining on the pool's ready clips; the next
    training round starts from its branch weights. 409 ``pretrain_running`` while one is
    queued or running; 503 ``broker_unavailable`` as for a round."""
    return _send_manual(session, sender, loop.on_manual_pretrain(session, settings=settings))


@router.get("/pretrain", response_model=list[PretrainRunOut])
def list_pretraining(_: CallerDep, session: SessionDep) -> list[PretrainRunOut]:
    """Pretraining runs, newest first (the last 50)."""
    runs = job_repo.list_jobs_of_kind(session, kind=loop.PRETRAIN_JOB, limit=50)
    return [
        PretrainRunOut(
            job_id=j.id,
            status=j.status,
            progress=j.progress,
            message=j.message,
            params=j.params or {},
            created_at=j.created_at,
            finished_at=j.finished_at,
        )
        for j in runs
    ]


@router.get("", response_model=list[ModelVersionSummary])
def list_models(_: CallerDep, session: SessionDep) -> list[ModelVersionOut]:
    """Every version, oldest first, as a summary: no vocabulary and no per-tag metrics
    (GET /models/{id} has them), so the list does not grow with the vocabulary."""
    return [version_out(v, summary=True) for v in version_repo.list_versions(session)]


@router.get("/{version_id}", response_model=ModelVersionOut)
def get_model(version_id: PathId, _: CallerDep, session: SessionDep) -> ModelVersionOut:
    """One version in full: its vocabulary and every metric, per tag too. 404
    ``model_not_found``."""
    return version_out(version_repo.get_version(session, version_id))


@router.post("/{version_id}/promote", response_model=ModelVersionOut)
def promote_model(
    version_id: PathId, _: AdminDep, session: SessionDep, settings: SettingsDep, sender: SenderDep
) -> ModelVersionOut:
    """Serve this version (the current one is retired); promoting an older one rolls back.
    The version then scores the clips it has not scored and the queue is refilled."""
    version = version_repo.promote(session, version_id)
    out = version_out(version)
    session.commit()
    dispatch(session, sender, loop.on_promote(session, settings=settings))
    return out
