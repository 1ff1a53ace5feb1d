"""The holdout: a random audit sample of clips that measures every model version without the
bias of actively chosen labels. Never commits.

Holdout clips are never queued for active learning and never trained on; they are labeled
through their own queue (lane ``holdout``), and each round reports its metrics on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tagloop.db import queue as queue_repo
from tagloop.db.models import Clip, Label, QueueItem, utcnow
from tagloop.errors import InvalidInput, NotFound

HOLDOUT_STRATEGY = "holdout"


# The smallest fraction a holdout draw takes: below it a typo, not an audit sample.
MIN_HOLDOUT_FRACTION = 0.001


def sample_holdout(session: Session, *, fraction: float) -> list[int]:
    """Unlabeled pool clips, drawn at random: ``fraction`` of all ready pool clips."""
    if not math.isfinite(fraction) or not 0.0 < fraction <= 1.0:
        raise InvalidInput("fraction must be in (0, 1]", code="invalid_fraction")
    if fraction < MIN_HOLDOUT_FRACTION:
        raise InvalidInput(
            f"fraction must be at least {MIN_HOLDOUT_FRACTION:g}, got {fraction:g}",
            code="holdout_fraction_too_small",
        )
    total = int(
        session.scalar(
            select(func.count(Clip.id)).where(Clip.status == "ready", Clip.split == "pool")
        )
        or 0
    )
    if total and fraction * total < 0.5:
        # Rounding up would make any tiny fraction one clip: say so instead.
        raise InvalidInput(
            f"fraction {fraction:g} of {total} pool clips rounds to no clip; ask for at least "
            f"{0.5 / total:.3g}, or name clip_ids",
            code="holdout_fraction_too_small",
        )
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    q = (
        select(Clip.id)
        .where(Clip.status == "ready", Clip.split == "pool", ~labeled)
        .order_by(func.random())
        .limit(math.ceil(fraction * total))
    )
    return [int(c) for c in session.scalars(q)]


def mark_holdout(session: Session, *, clip_ids: Sequence[int]) -> int:
    """Move ``clip_ids`` into the holdout and queue the unlabeled ones in its lane; returns
    how many clips were newly marked. ``clip_not_found`` (404) names unknown ids."""
    ids = sorted({int(c) for c in clip_ids})
    if not ids:
        return 0
    known = set(session.scalars(select(Clip.id).where(Clip.id.in_(ids))))
    missing = [c for c in ids if c not in known]
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise NotFound(f"no such clips: {shown}", code="clip_not_found")
    marked = session.execute(
        update(Clip)
        .where(Clip.id.in_(ids), Clip.split != "holdout")
        .values(split="holdout")
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    # They leave the active-learning queue (leases in flight end with the label or expiry).
    session.execute(
        delete(QueueItem).where(
            QueueItem.clip_id.in_(ids), QueueItem.status == "queued", QueueItem.lane == "al"
        )
    )
    fill_holdout_queue(session)
    return int(marked or 0)


def fill_holdout_queue(session: Session, *, cooldown_s: float = 0.0) -> int:
    """Queue every unlabeled, unparked holdout clip that has no open row and was not skipped
    within ``cooldown_s``, in a random order (never to who skipped it: ``lease_next``)."""
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    open_row = (
        select(QueueItem.id)
        .where(QueueItem.clip_id == Clip.id, QueueItem.status.in_(("queued", "leased")))
        .exists()
    )
    cooling = (
        select(QueueItem.id)
        .where(
            QueueItem.clip_id == Clip.id,
            QueueItem.status == "skipped",
            QueueItem.skipped_at > utcnow() - timedelta(seconds=cooldown_s),
        )
        .exists()
    )
    todo = list(
        session.scalars(
            select(Clip.id)
            .where(
                Clip.split == "holdout",
                Clip.needs_review.is_(False),
                ~labeled,
                ~open_row,
                ~cooling,
            )
            .order_by(func.random())
        )
    )
    start = int(
        session.scalar(select(func.max(QueueItem.rank)).where(QueueItem.lane == "holdout")) or 0
    )
    for i, clip_id in enumerate(todo):
        session.add(
            QueueItem(
                clip_id=clip_id,
                strategy=HOLDOUT_STRATEGY,
                score=0.0,
                rank=start + 1 + i,
                lane="holdout",
                status="queued",
            )
        )
    session.flush()
    return len(todo)


def describe_holdout(session: Session) -> dict[str, int]:
    """Holdout clips, how many are labeled, how many wait in its queue."""
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    clips = select(func.count(Clip.id)).where(Clip.split == "holdout")
    return {
        "clips": int(session.scalar(clips) or 0),
        "labeled": int(session.scalar(clips.where(labeled)) or 0),
        "queued": queue_repo.count_queued(session, lane="holdout"),
    }
