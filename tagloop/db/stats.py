"""Read-only aggregates: dashboard counts, the current round, the learning curve, the stopping
rule, and the rows of an export. Never commits; never writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from tagloop.db import holdout as holdout_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import queue as queue_repo
from tagloop.db.jobs import ACTIVE
from tagloop.db.models import Clip, Job, Label, ModelVersion, Prediction, QueueItem, Tag, Video
from tagloop.export import ExportLabel, ExportPrediction, ExportRow, ExportSkip
from tagloop.training.metrics import rare_tags
from tagloop.training.stopping import first_stop, should_stop

VIDEO_STATUSES = ("queued", "processing", "ready", "failed")


def _count(session: Session, model: type[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def collect_counts(session: Session) -> dict[str, Any]:
    """Videos by status, clips, labeled clips, labels, queue rows by status, tags, parked
    clips (``needs_review``) and the holdout (clips, labeled, queued)."""
    videos = dict.fromkeys(VIDEO_STATUSES, 0)
    videos.update(
        {
            s: int(n)
            for s, n in session.execute(
                select(Video.status, func.count(Video.id)).group_by(Video.status)
            )
        }
    )
    labeled = session.scalar(select(func.count(func.distinct(Label.clip_id))))
    parked = session.scalar(select(func.count(Clip.id)).where(Clip.needs_review.is_(True)))
    return {
        "videos": videos,
        "clips": _count(session, Clip),
        "labeled_clips": int(labeled or 0),
        "labels": _count(session, Label),
        "queue": queue_repo.count_by_status(session),
        "tags": _count(session, Tag),
        "needs_review": int(parked or 0),
        "holdout": holdout_repo.describe_holdout(session),
    }


def _score(version: ModelVersion) -> float | None:
    score = (version.metrics or {}).get("score")
    return float(score) if isinstance(score, int | float) else None


def _holdout(version: ModelVersion) -> tuple[float | None, int | None]:
    """The version's holdout score and how many holdout clips measured it; (None, None) when
    the holdout had no labels when it was trained."""
    holdout = (version.metrics or {}).get("holdout")
    if not isinstance(holdout, dict):
        return None, None
    score, n = holdout.get("score"), holdout.get("n_clips")
    return (
        float(score) if isinstance(score, int | float) else None,
        int(n) if isinstance(n, int) else None,
    )


def describe_round(session: Session) -> dict[str, Any]:
    """The promoted version (id, n_train, score), labels added since it was trained, and the
    queued or running jobs with their progress."""
    promoted = version_repo.promoted_version(session)
    if promoted is None:
        since = _count(session, Label)
    else:
        # Compared in SQL so SQLite's naive and PostgreSQL's aware timestamps both work.
        trained_at = select(ModelVersion.created_at).where(ModelVersion.id == promoted.id)
        since = int(
            session.scalar(
                select(func.count(Label.id)).where(Label.created_at > trained_at.scalar_subquery())
            )
            or 0
        )
    jobs = session.scalars(select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.id))
    return {
        "promoted_version_id": None if promoted is None else promoted.id,
        "n_train": None if promoted is None else promoted.n_train,
        "score": None if promoted is None else _score(promoted),
        "labels_since_trained": since,
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "progress": j.progress,
                "message": j.message,
            }
            for j in jobs
        ],
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _multilabel(version: ModelVersion) -> dict[str, Any]:
    """Macro-AP and micro-F1 on the holdout when it measured the version, else on validation
    (``metrics_on`` says which)."""
    metrics = version.metrics or {}
    holdout = metrics.get("holdout")
    source, on = (holdout, "holdout") if isinstance(holdout, dict) else (metrics, "validation")
    return {
        "macro_ap": _number(source.get("macro_ap")),
        "micro_f1": _number(source.get("micro_f1")),
        # At the threshold fitted on the holdout (cross-fitted); only the holdout has one.
        "micro_f1_fitted": _number(source.get("micro_f1_fitted")),
        "metrics_on": on,
    }


def _rare_reference(versions: list[ModelVersion]) -> dict[str, int]:
    """Positives per tag to rank rarity by: the newest holdout count (a random sample, so an
    unbiased prevalence), else the newest round's training positives."""
    newest_first = [v.metrics or {} for v in reversed(versions)]
    for metrics in newest_first:
        counts = (metrics.get("holdout") or {}).get("positives")
        if isinstance(counts, dict) and any(counts.values()):
            return {str(t): int(n) for t, n in counts.items()}
    for metrics in newest_first:
        counts = metrics.get("train_positives")
        if isinstance(counts, dict) and counts:
            return {str(t): int(n) for t, n in counts.items()}
    return {}


def learning_curve(session: Session) -> list[dict[str, Any]]:
    """Every model version, oldest first: its training-set size against its validation score
    and its holdout score (None before the holdout had labels), macro-AP and micro-F1 (holdout
    when present), its stop-set kappa, and the positives it trained on for each rare tag (the
    rarest 20 % by ``_rare_reference``)."""
    versions = version_repo.list_versions(session)
    rare = rare_tags(_rare_reference(versions))
    points = []
    for v in versions:
        holdout_score, n_holdout = _holdout(v)
        positives = (v.metrics or {}).get("train_positives")
        points.append(
            {
                "version_id": v.id,
                "n_labels": v.n_train,
                "score": _score(v),
                "holdout_score": holdout_score,
                "n_holdout": n_holdout,
                **_multilabel(v),
                "stop_kappa": _number((v.metrics or {}).get("stop_kappa")),
                "rare_positives": (
                    {t: int(positives.get(t, 0)) for t in rare}
                    if isinstance(positives, dict)
                    else None
                ),
                "status": v.status,
                "created_at": v.created_at,
            }
        )
    return points


def _labels_used(version: ModelVersion) -> int:
    """Labeled clips a round used: its training clips plus its validation split."""
    metrics = version.metrics or {}
    n_val = metrics.get("n_val")
    extra = int(n_val) if isinstance(n_val, int) and not metrics.get("val_is_train") else 0
    return version.n_train + extra


def describe_stopping(session: Session, *, threshold: float, window: int) -> dict[str, Any]:
    """The stopping rule: each version's stop-set kappa against the version before (oldest
    first, versions that measured a stop set); ``fired``: the last ``window`` kappas all reach
    ``threshold`` now; ``fired_at_version`` / ``labels_at_fire``: where the rule first fired
    (kept when later versions move again, as the paper stops at the first firing)."""
    measured = [
        v
        for v in version_repo.list_versions(session)
        if isinstance((v.metrics or {}).get("stop_set"), dict)
    ]
    kappas = [_number(v.metrics.get("stop_kappa")) for v in measured]
    first = first_stop(kappas, threshold=threshold, window=window)
    return {
        "kappas": [{"version": v.id, "kappa": k} for v, k in zip(measured, kappas, strict=True)],
        "threshold": threshold,
        "window": window,
        "fired": should_stop(kappas, threshold=threshold, window=window),
        "fired_at_version": None if first is None else measured[first].id,
        "labels_at_fire": None if first is None else _labels_used(measured[first]),
    }


def iter_export_rows(session: Session, *, batch_size: int = 500) -> Iterator[ExportRow]:
    """Every clip that has a label, a prediction or a skip, by id, in batches of
    ``batch_size`` clips (keyset pagination: memory stays bounded however many clips there
    are). A clip only ever skipped is exported too: that people could not label it is
    information about the clip."""
    has_label = exists().where(Label.clip_id == Clip.id)
    has_pred = exists().where(Prediction.clip_id == Clip.id)
    has_skip = exists().where(QueueItem.clip_id == Clip.id, QueueItem.status == "skipped")
    after = 0
    while True:
        batch = session.execute(
            select(
                Clip.id,
                Clip.video_id,
                Video.filename,
                Clip.start_s,
                Clip.end_s,
                Clip.split,
                Clip.needs_review,
            )
            .join(Video, Video.id == Clip.video_id)
            .where(Clip.id > after, or_(has_label, has_pred, has_skip))
            .order_by(Clip.id)
            .limit(batch_size)
        ).all()
        if not batch:
            return
        ids = [int(r[0]) for r in batch]
        labels: dict[int, list[ExportLabel]] = {}
        for lb in session.scalars(select(Label).where(Label.clip_id.in_(ids)).order_by(Label.id)):
            labels.setdefault(lb.clip_id, []).append(
                ExportLabel(
                    id=lb.id,
                    annotator=lb.annotator,
                    tags=[str(t) for t in lb.tags],
                    seconds_spent=lb.seconds_spent,
                    created_at=lb.created_at,
                )
            )
        latest: dict[int, ExportPrediction] = {}
        preds = select(Prediction).where(Prediction.clip_id.in_(ids))
        # Ascending, so the last one seen per clip is the latest.
        for p in session.scalars(preds.order_by(Prediction.created_at, Prediction.id)):
            latest[p.clip_id] = ExportPrediction(
                model_version_id=p.model_version_id,
                top_tags=list(p.top_tags or []),
                uncertainty=p.uncertainty,
                created_at=p.created_at,
            )
        skips: dict[int, list[ExportSkip]] = {}
        skipped = select(QueueItem).where(QueueItem.clip_id.in_(ids), QueueItem.status == "skipped")
        for q in session.scalars(skipped.order_by(QueueItem.id)):
            skips.setdefault(q.clip_id, []).append(
                ExportSkip(
                    annotator=q.annotator or "", reason=q.skip_reason, skipped_at=q.skipped_at
                )
            )
        for clip_id, video_id, filename, start_s, end_s, split, needs_review in batch:
            yield ExportRow(
                clip_id=int(clip_id),
                video_id=int(video_id),
                video_filename=str(filename),
                start_s=float(start_s),
                end_s=float(end_s),
                labels=labels.get(int(clip_id), []),
                prediction=latest.get(int(clip_id)),
                split=str(split),
                needs_review=bool(needs_review),
                skips=skips.get(int(clip_id), []),
            )
        after = ids[-1]
