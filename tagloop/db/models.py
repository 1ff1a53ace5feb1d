"""SQLAlchemy 2 models for the whole data model (DESIGN section 3).

Portable types only, so the same schema runs on SQLite and PostgreSQL. Schema changes go
through Alembic migrations (tagloop/db/migrations), never ``create_all`` in production code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so Alembic migrations are the same on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# DateTime(timezone=True) keeps the offset on PostgreSQL; SQLite stores naive UTC.
TS = DateTime(timezone=True)
# Primary keys are INTEGER columns: 32-bit on PostgreSQL, which fails ("integer out of
# range") on a larger bound id, and SQLite's driver overflows past 64 bits. Ids from clients
# are checked against this bound before they reach a query.
MAX_ID = 2**31 - 1


class Video(Base):
    __tablename__ = "video"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(512))
    blob_uri: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    clips: Mapped[list[Clip]] = relationship(
        back_populates="video", cascade="all, delete-orphan", passive_deletes=True
    )


class Clip(Base):
    __tablename__ = "clip"
    # (video_id, index) is unique so a redelivered task upserts instead of duplicating.
    __table_args__ = (UniqueConstraint("video_id", "index", name="uq_clip_video_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("video.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    has_audio: Mapped[bool] = mapped_column(Boolean, default=False)
    tensor_uri: Mapped[str | None] = mapped_column(String(1024))
    preview_uri: Mapped[str | None] = mapped_column(String(1024))
    thumbnail_uri: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    # "pool": active learning may queue it; "holdout": the random audit sample, labeled
    # through its own queue, never trained on, used to measure every version.
    split: Mapped[str] = mapped_column(String(16), default="pool", server_default="pool")
    # Parked after N skips by different annotators: no queue offers it until reviewed.
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # When an admin last un-parked it: only skips after this count towards parking it again.
    reviewed_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    video: Mapped[Video] = relationship(back_populates="clips")


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # The name case-folded with its spacing collapsed (tagloop.db.tags.tag_key): "Dog" and
    # "dog" are one tag. Computed in Python so SQLite and PostgreSQL agree on Unicode case.
    name_key: Mapped[str] = mapped_column(String(512), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    group: Mapped[str | None] = mapped_column(String(128))
    # The broader tag of a taxonomy ("labrador" under "dog"): kept for import and export and
    # for people browsing the vocabulary; the model does not read it (``group`` is what
    # makes tags exclusive).
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tag.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Label(Base):
    """An annotator's current tag set for a clip: one per (clip, annotator). A new label by
    the same annotator replaces theirs, which moves to ``label_history``."""

    __tablename__ = "label"
    __table_args__ = (UniqueConstraint("clip_id", "annotator", name="uq_label_clip_id_annotator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(128))
    tags: Mapped[list[Any]] = mapped_column(JSON)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)
    # Groups the annotator was unsure of: left unknown instead of "none of these" (NULL on
    # labels stored before migration 0006: none).
    unsure_groups: Mapped[list[Any] | None] = mapped_column(JSON, default=list)


class LabelHistory(Base):
    """A label its annotator replaced: kept for audit, never trained on or exported.
    ``label_id`` is the replaced row's id (that row is gone)."""

    __tablename__ = "label_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(Integer)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(128))
    tags: Mapped[list[Any]] = mapped_column(JSON)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(TS)
    superseded_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="training", index=True)
    vocabulary: Mapped[list[Any]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    artifact_uri: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Prediction(Base):
    __tablename__ = "prediction"
    __table_args__ = (
        UniqueConstraint("clip_id", "model_version_id", name="uq_prediction_clip_model"),
        # A refill reads the top of one version's ranking: a backward index scan that stops
        # after the batch instead of sorting the whole pool.
        Index("ix_prediction_version_uncertainty", "model_version_id", "uncertainty", "clip_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE"), index=True
    )
    top_tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    embedding_uri: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class QueueItem(Base):
    __tablename__ = "queue_item"
    __table_args__ = (
        Index("ix_queue_item_status_rank", "status", "rank"),
        Index("ix_queue_item_clip_status", "clip_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    annotator: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS)
    # The unguessable handle a client holds for its lease (never the row id); new per lease.
    lease_id: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    # "al" (the active-learning queue) or "holdout" (the audit sample's own queue).
    lane: Mapped[str] = mapped_column(String(16), default="al", server_default="al")
    # Why the annotator skipped (unclear, not_applicable or their own words) and when.
    skip_reason: Mapped[str | None] = mapped_column(Text)
    skipped_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Job(Base):
    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    # What the job works on, e.g. {"video_id": 3}; lets recovery re-enqueue a lost job.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    # Heartbeat: every progress update touches it; a running job that stops beating was lost.
    updated_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class PseudoLabelRow(Base):
    """A co-training pseudo-label (tagloop.training.cotrain): one view's confident answer for
    a clip its other view was unsure of, used to train ``model_version_id``. Kept apart from
    human labels (the ``label`` table): never exported as labels, ``"kind": "pseudo"`` in the
    API."""

    __tablename__ = "pseudo_label"
    __table_args__ = (
        UniqueConstraint(
            "model_version_id", "clip_id", "source", name="uq_pseudo_label_version_clip_source"
        ),
        # Listing one version's pseudo-labels by id (keyset pages).
        Index("ix_pseudo_label_version_id", "model_version_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE")
    )
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id", ondelete="CASCADE"), index=True)
    tags: Mapped[list[Any]] = mapped_column(JSON)
    # Ungrouped tags the teaching view says do not apply.
    negative_tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(32))  # the teaching modality, e.g. "visual"
    confidence: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
