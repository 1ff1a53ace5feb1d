"""Pseudo-label repository: co-training labels a version was trained with. Never commits.

Pseudo-labels live in their own table so nothing that reads human labels (training targets
from ``label``, the export, stats, the queue) can mistake one for a person's answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from tagloop.db.model_versions import get_version
from tagloop.db.models import PseudoLabelRow
from tagloop.errors import InvalidInput

MAX_SOURCE_LENGTH = 32


class PseudoLabelLike(Protocol):
    """What is stored (``tagloop.training.cotrain.PseudoLabel`` has it; db/ does not import
    training code)."""

    @property
    def clip_id(self) -> int: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def negative_tags(self) -> list[str]: ...
    @property
    def source(self) -> str: ...
    @property
    def confidence(self) -> float: ...


def _row(version_id: int, label: PseudoLabelLike) -> dict[str, object]:
    confidence = float(label.confidence)
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        raise InvalidInput(
            f"pseudo-label confidence must be in [0, 1], got {label.confidence}",
            code="bad_pseudo_label",
        )
    if not label.source or len(label.source) > MAX_SOURCE_LENGTH:
        raise InvalidInput(
            f"pseudo-label source must be 1..{MAX_SOURCE_LENGTH} characters",
            code="bad_pseudo_label",
        )
    return {
        "model_version_id": version_id,
        "clip_id": int(label.clip_id),
        "tags": [str(t) for t in label.tags],
        "negative_tags": [str(t) for t in label.negative_tags],
        "source": label.source,
        "confidence": confidence,
    }


def add_pseudo_labels(session: Session, version_id: int, labels: Iterable[PseudoLabelLike]) -> int:
    """Store ``labels`` for the version trained with them; returns how many.

    404 ``model_not_found`` for an unknown version; ``bad_pseudo_label`` (nothing stored)
    for a confidence outside [0, 1] or an empty source. One row per (version, clip, source).
    """
    get_version(session, version_id)
    rows = [_row(version_id, lb) for lb in labels]
    if rows:
        # One executemany: a round may store thousands.
        session.execute(insert(PseudoLabelRow), rows)
    return len(rows)


def pseudo_labels_of(
    session: Session,
    version_id: int,
    *,
    limit: int = 50,
    offset: int = 0,
    after_id: int | None = None,
) -> list[PseudoLabelRow]:
    """A version's pseudo-labels by id: ``after_id`` for keyset pages (what the API uses),
    ``offset`` for plain ones."""
    q = (
        select(PseudoLabelRow)
        .where(PseudoLabelRow.model_version_id == version_id)
        .order_by(PseudoLabelRow.id)
        .limit(limit)
        .offset(offset)
    )
    if after_id is not None:
        q = q.where(PseudoLabelRow.id > after_id)
    return list(session.scalars(q))


def count_pseudo_labels(session: Session, version_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(PseudoLabelRow.id)).where(
                PseudoLabelRow.model_version_id == version_id
            )
        )
        or 0
    )
