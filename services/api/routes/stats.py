"""Dashboard numbers: counts, the current training round and the learning curve."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import CallerDep, SessionDep
from tagloop.db import stats as stats_repo

router = APIRouter(prefix="/api/v1", tags=["stats"])


class HoldoutCounts(BaseModel):
    clips: int
    labeled: int
    queued: int


class Counts(BaseModel):
    videos: dict[str, int]
    clips: int
    labeled_clips: int
    labels: int
    queue: dict[str, int]
    tags: int
    # Clips parked after skips by several annotators, waiting for POST /clips/{id}/review.
    needs_review: int
    # The audit sample (GET /api/v1/holdout gives the same numbers).
    holdout: HoldoutCounts


class RunningJob(BaseModel):
    id: int
    kind: str
    status: str
    progress: float
    message: str


class Round(BaseModel):
    promoted_version_id: int | None
    n_train: int | None
    score: float | None
    labels_since_trained: int
    jobs: list[RunningJob]


class CurvePoint(BaseModel):
    version_id: int
    n_labels: int
    score: float | None
    # The version's score on the labeled holdout and how many clips that was; None when the
    # holdout had no labels when it was trained. Unlike ``score`` (validation clips drawn
    # from actively chosen labels) it is an unbiased estimate.
    holdout_score: float | None = None
    n_holdout: int | None = None
    status: str
    created_at: datetime


class CallerOut(BaseModel):
    name: str
    role: str


class StatsOut(BaseModel):
    counts: Counts
    round: Round
    learning_curve: list[CurvePoint]
    caller: CallerOut


@router.get("/stats", response_model=StatsOut)
def get_stats(caller: CallerDep, session: SessionDep) -> StatsOut:
    """Counts, the promoted version and the jobs in flight, score against labels per version,
    and who is asking (so a client can show admin actions only to admins)."""
    return StatsOut(
        counts=Counts(**stats_repo.collect_counts(session)),
        round=Round(**stats_repo.describe_round(session)),
        learning_curve=[CurvePoint(**p) for p in stats_repo.learning_curve(session)],
        caller=CallerOut(name=caller.name, role=caller.role),
    )
