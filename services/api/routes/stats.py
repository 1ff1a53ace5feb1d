"""Dashboard numbers: counts, the current training round, the learning curve and the stopping
rule."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import CallerDep, SessionDep, SettingsDep
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
    # Multi-label figures, on the holdout when it measured the version, else on validation
    # (``metrics_on``); macro-AP averages every tag's AP, grouped tags one-vs-rest.
    macro_ap: float | None = None
    micro_f1: float | None = None
    # micro-F1 at the decision threshold fitted on the holdout (cross-fitted), not at 0.5.
    micro_f1_fitted: float | None = None
    metrics_on: str = "validation"
    # Agreement with the version before on the stop set (the stopping rule's kappa).
    stop_kappa: float | None = None
    # Positives this version trained on for each rare tag (the rarest 20 % of tags by the
    # holdout's labeled positives, else by the newest round's); None before it was recorded.
    rare_positives: dict[str, int] | None = None
    status: str
    created_at: datetime


class KappaPoint(BaseModel):
    version: int
    kappa: float | None


class Stopping(BaseModel):
    """Stabilizing predictions (Bloodgood and Vijay-Shanker 2009): labeling more no longer
    changes the model once ``window`` consecutive versions agree with the one before at
    Cohen's kappa >= ``threshold`` on the fixed stop set. ``fired``: that holds for the newest
    versions; ``fired_at_version``/``labels_at_fire``: where it first held."""

    kappas: list[KappaPoint]
    threshold: float
    window: int
    fired: bool
    fired_at_version: int | None
    labels_at_fire: int | None


class CallerOut(BaseModel):
    name: str
    role: str


class StatsOut(BaseModel):
    counts: Counts
    round: Round
    learning_curve: list[CurvePoint]
    stopping: Stopping
    caller: CallerOut


@router.get("/stats", response_model=StatsOut)
def get_stats(caller: CallerDep, session: SessionDep, settings: SettingsDep) -> StatsOut:
    """Counts, the promoted version and the jobs in flight, score against labels per version,
    the stopping rule, and who is asking (so a client can show admin actions only to admins)."""
    return StatsOut(
        counts=Counts(**stats_repo.collect_counts(session)),
        round=Round(**stats_repo.describe_round(session)),
        learning_curve=[CurvePoint(**p) for p in stats_repo.learning_curve(session)],
        stopping=Stopping(
            **stats_repo.describe_stopping(
                session, threshold=settings.stop_kappa, window=settings.stop_window
            )
        ),
        caller=CallerOut(name=caller.name, role=caller.role),
    )
