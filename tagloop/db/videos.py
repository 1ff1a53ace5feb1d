"""Video and clip repository functions. They never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tagloop.db.models import Clip, Label, Prediction, Video, utcnow
from tagloop.errors import InvalidInput, NotFound

VIDEO_STATUSES = ("queued", "processing", "ready", "failed")
CLIP_SPLITS = ("pool", "holdout")


def get_video(session: Session, video_id: int) -> Video:
    video = session.get(Video, video_id)
    if video is None:
        raise NotFound(f"video {video_id} does not exist", code="video_not_found")
    return video


def find_video_by_sha(session: Session, sha256: str) -> Video | None:
    return session.scalar(select(Video).where(Video.sha256 == sha256))


def add_video_unless_sha_exists(session: Session, **values: Any) -> Video | None:
    """Insert a video row unless one with the same ``sha256`` exists; None when it does.

    Racing requests with the same bytes get exactly one row and no IntegrityError: the
    insert waits for a concurrent uncommitted row with that sha256 and then does nothing
    (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL), so the transaction stays usable.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg_stmt = pg_insert(Video).values(**values)
        return session.scalar(
            pg_stmt.on_conflict_do_nothing(index_elements=[Video.sha256]).returning(Video)
        )
    if dialect == "sqlite":
        lite_stmt = sqlite_insert(Video).values(**values)
        return session.scalar(
            lite_stmt.on_conflict_do_nothing(index_elements=[Video.sha256]).returning(Video)
        )
    # Any other backend: a savepoint keeps the outer transaction usable after the conflict.
    video = Video(**values)
    try:
        with session.begin_nested():
            session.add(video)
    except IntegrityError:
        return None
    return video


def list_videos(
    session: Session, *, status: str | None = None, limit: int = 50, after_id: int | None = None
) -> list[Video]:
    """Newest first; ``after_id`` is the last id of the previous page (keyset pagination)."""
    q = select(Video).order_by(Video.id.desc()).limit(limit)
    if status:
        q = q.where(Video.status == status)
    if after_id is not None:
        q = q.where(Video.id < after_id)
    return list(session.scalars(q))


def count_clips(session: Session, video_ids: Sequence[int]) -> dict[int, int]:
    if not video_ids:
        return {}
    rows = session.execute(
        select(Clip.video_id, func.count(Clip.id))
        .where(Clip.video_id.in_(video_ids))
        .group_by(Clip.video_id)
    )
    return {vid: n for vid, n in rows}


def get_clip(session: Session, clip_id: int) -> Clip:
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFound(f"clip {clip_id} does not exist", code="clip_not_found")
    return clip


def list_clips(
    session: Session,
    *,
    video_id: int | None = None,
    labeled: bool | None = None,
    needs_review: bool | None = None,
    split: str | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[Clip]:
    """Oldest first within a video, so a video's clips read in order. ``needs_review``
    filters on parked clips, ``split`` on ``pool`` or ``holdout``."""
    if split is not None and split not in CLIP_SPLITS:
        raise InvalidInput(
            f"unknown split {split!r}; one of {', '.join(CLIP_SPLITS)}", code="invalid_split"
        )
    q = select(Clip).order_by(Clip.id).limit(limit)
    if video_id is not None:
        q = q.where(Clip.video_id == video_id)
    if needs_review is not None:
        q = q.where(Clip.needs_review.is_(needs_review))
    if split is not None:
        q = q.where(Clip.split == split)
    if after_id is not None:
        q = q.where(Clip.id > after_id)
    if labeled is not None:
        has_label = select(Label.id).where(Label.clip_id == Clip.id).exists()
        q = q.where(has_label if labeled else ~has_label)
    return list(session.scalars(q))


def mark_reviewed(session: Session, clip_id: int) -> Clip:
    """Un-park a clip (``needs_review`` off) so the queues may offer it again; a clip that is
    not parked is left as it is. ``clip_not_found`` (404) for an unknown id."""
    clip = get_clip(session, clip_id)
    if clip.needs_review:
        clip.needs_review, clip.reviewed_at = False, utcnow()
    session.flush()
    return clip


def clips_of_video(session: Session, video_id: int) -> list[Clip]:
    return list(session.scalars(select(Clip).where(Clip.video_id == video_id).order_by(Clip.index)))


def labels_of_clip(session: Session, clip_id: int) -> list[Label]:
    return list(session.scalars(select(Label).where(Label.clip_id == clip_id).order_by(Label.id)))


def latest_prediction(session: Session, clip_id: int) -> Prediction | None:
    """The clip's prediction from the newest model version that scored it."""
    return session.scalar(
        select(Prediction)
        .where(Prediction.clip_id == clip_id)
        .order_by(Prediction.model_version_id.desc())
        .limit(1)
    )
