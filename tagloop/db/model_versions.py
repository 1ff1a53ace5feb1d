"""Model registry rows: versions, their status and which one is promoted. Never commits.

Statuses: training -> ready (trained, not serving) -> promoted (serving) -> retired; failed.
Exactly one version is promoted at a time.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.db.models import ModelVersion
from tagloop.errors import Conflict, NotFound

PROMOTABLE = ("ready", "retired", "promoted")


def create_version(
    session: Session, *, vocabulary: list[dict[str, Any]], config: dict[str, Any], n_train: int
) -> ModelVersion:
    version = ModelVersion(
        status="training", vocabulary=vocabulary, config=config, metrics={}, n_train=n_train
    )
    session.add(version)
    session.flush()
    return version


def decision_threshold_of() -> Any:
    """SQL for a version's decision threshold (``metrics.holdout.decision_threshold``, fitted
    on the holdout by ``training.thresholds``), NULL where none is fitted."""
    return ModelVersion.metrics[("holdout", "decision_threshold")].as_float()


def group_threshold_of() -> Any:
    """SQL for a version's cut on a group's top probability (``metrics.holdout.
    group_threshold``), NULL where none is fitted."""
    return ModelVersion.metrics[("holdout", "group_threshold")].as_float()


# (database, version id, its created_at) -> its trained tags. A version's training data is
# fixed once it has predictions, so this never goes stale; the created_at tells a version
# from another of the same id in a recreated database.
_TRAINED: dict[tuple[str, int, str], frozenset[str]] = {}
_TRAINED_ENTRIES = 16
_TRAINED_LOCK = threading.Lock()  # the API's routes run in a thread pool


def trained_tags(
    session: Session, *, version_id: int, created_at: datetime | None
) -> frozenset[str] | None:
    """Tags with at least one positive label in the version's training data
    (``metrics.train_positives``, written at the end of its round); None when the version
    has not recorded them (older versions): then every tag counts as trained. Read once per
    process and version: with 10,000 tags the map is some 200 KB of JSON."""
    key = (str(session.get_bind().engine.url), version_id, str(created_at))
    with _TRAINED_LOCK:
        cached = _TRAINED.get(key)
    if cached is not None:
        return cached
    positives = session.scalar(
        select(ModelVersion.metrics["train_positives"]).where(ModelVersion.id == version_id)
    )
    if not isinstance(positives, dict):
        return None
    trained = frozenset(t for t, n in positives.items() if isinstance(n, int) and n > 0)
    with _TRAINED_LOCK:
        while len(_TRAINED) >= _TRAINED_ENTRIES:
            _TRAINED.pop(next(iter(_TRAINED)))
        _TRAINED[key] = trained
    return trained


def precheck_thresholds(session: Session) -> tuple[dict[int, float], dict[int, float]]:
    """(version id -> its decision threshold, version id -> its group threshold), each for
    the versions that have one; one pass over the versions."""
    rows = session.execute(select(ModelVersion.id, decision_threshold_of(), group_threshold_of()))
    tags: dict[int, float] = {}
    groups: dict[int, float] = {}
    for version, tag_cut, group_cut in rows:
        if tag_cut is not None:
            tags[int(version)] = float(tag_cut)
        if group_cut is not None:
            groups[int(version)] = float(group_cut)
    return tags, groups


def get_version(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"model version {version_id} does not exist", code="model_not_found")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))


def promoted_version(session: Session) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.status == "promoted")
        .order_by(ModelVersion.id.desc())
    )


def promote(session: Session, version_id: int) -> ModelVersion:
    """Serve ``version_id``; the previously promoted version is retired (roll back by
    promoting it again)."""
    version = get_version(session, version_id)
    if version.status not in PROMOTABLE or not version.artifact_uri:
        raise Conflict(
            f"model version {version_id} is {version.status} and cannot be promoted",
            code="not_promotable",
        )
    for current in session.scalars(select(ModelVersion).where(ModelVersion.status == "promoted")):
        if current.id != version.id:
            current.status = "retired"
    version.status = "promoted"
    session.flush()
    return version
