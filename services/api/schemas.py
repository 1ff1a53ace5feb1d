"""Response and request bodies of the v1 REST contract (DESIGN section 4)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from tagloop.db.labels import MAX_SECONDS_SPENT
from tagloop.db.models import MAX_ID
from tagloop.errors import InvalidInput

T = TypeVar("T")

# Ids from clients: a number outside 1..MAX_ID (the INTEGER primary keys) is a 422
# ``validation_error`` here instead of an overflow (500) in the database driver.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]


class RequestBody(BaseModel):
    """The base of every request body: Python's JSON parser reads ``NaN``, ``Infinity`` and
    ``1e999`` as floats, which JSON does not have and no export could write back, so a float
    field refuses them (422 ``validation_error``)."""

    model_config = ConfigDict(allow_inf_nan=False)


class VideoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    filename: str
    size_bytes: int
    status: str
    error_code: str | None
    error_message: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool | None
    created_at: datetime
    n_clips: int = 0
    duplicate: bool = False
    job_id: int | None = None


class ClipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    video_id: int
    index: int
    start_s: float
    end_s: float
    has_audio: bool
    status: str
    # "pool" or "holdout" (the audit sample); needs_review: parked after repeated skips.
    split: str = "pool"
    needs_review: bool = False
    created_at: datetime


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    annotator: str
    tags: list[str]
    unsure_groups: list[str] | None = None
    seconds_spent: float | None
    created_at: datetime


class ClipDetail(ClipOut):
    labels: list[LabelOut] = Field(default_factory=list)
    prediction: dict[str, Any] | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class ImportRequest(RequestBody):
    path: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    progress: float
    message: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; a tampered one is a clear 422, not a 500."""
    if not cursor:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "id":
            raise ValueError(kind)
        last_id = int(value)
        if not 0 <= last_id <= MAX_ID:
            raise ValueError(value)
        return last_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid cursor", code="invalid_cursor") from exc


# --- Tags, labels and the labeling queue -------------------------------------------------


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    group: str | None
    # The broader tag's name (None: none); the model does not read it.
    parent: str | None = None
    created_at: datetime


class TagCreate(RequestBody):
    """Longer names or descriptions than ``tags.MAX_NAME`` / ``tags.MAX_DESCRIPTION`` are 422
    ``invalid_tag_name`` / ``invalid_tag_description``."""

    name: str
    description: str = ""
    group: str | None = None
    parent: str | None = None


class LabelCreate(RequestBody):
    """``tags`` must not be empty unless ``none_apply`` says, on purpose, that no tag of the
    vocabulary applies (that label is stored with no tags)."""

    tags: list[str] = Field(default_factory=list)
    none_apply: bool = False
    # Groups the annotator is unsure of: unknown for training, not "none of these".
    unsure_groups: list[str] = Field(default_factory=list)
    seconds_spent: float | None = Field(default=None, ge=0, le=MAX_SECONDS_SPENT)
    lease_id: str | None = Field(default=None, max_length=64)


class LabelCreated(LabelOut):
    clip_id: int
    lease_closed: bool = False


class QueueReason(BaseModel):
    """Why this clip is offered: the selection strategy, its score and the clip's rank."""

    strategy: str
    score: float
    rank: int


class QueueNext(BaseModel):
    clip: ClipOut
    lease_id: str
    lease_expires_at: datetime
    suggestions: list[Any]
    # Pre-check suggestions with p at or above this: fitted on the holdout for the version
    # that made them (``training.thresholds``); None until the holdout has enough labels.
    decision_threshold: float | None = None
    # The same for a group's (exclusive tags') likeliest suggestion.
    group_threshold: float | None = None
    reason: QueueReason


class LeaseOut(BaseModel):
    lease_id: str
    clip_id: int
    status: str
    skip_reason: str | None = None
    # True when this skip parked the clip (enough different annotators skipped it).
    needs_review: bool = False


class LeaseRenewed(LeaseOut):
    """A renewed lease and when it ends now."""

    lease_expires_at: datetime


class RenewRequest(RequestBody):
    """Hold the lease this many seconds from now (``TAGLOOP_LEASE_SECONDS`` when left out):
    from 10 (or the lease's length, when that is shorter) to ``TAGLOOP_LEASE_SECONDS``, else
    422 ``invalid_hold_seconds``."""

    seconds: float | None = None


class SkipRequest(RequestBody):
    """``unclear``, ``not_applicable`` or the annotator's own words."""

    reason: str | None = Field(default=None, max_length=500)


# --- Co-training pseudo-labels -----------------------------------------------------------


class PseudoLabelOut(BaseModel):
    """A co-training pseudo-label: what one modality's head taught the other, never a
    person's label (``kind`` is always ``"pseudo"``). ``negative_tags``: ungrouped tags the
    teaching view said do not apply."""

    model_config = ConfigDict(from_attributes=True)

    kind: Literal["pseudo"] = "pseudo"
    id: int
    model_version_id: int
    clip_id: int
    tags: list[str]
    negative_tags: list[str]
    source: str
    confidence: float
    created_at: datetime


class PseudoLabelPage(Page[PseudoLabelOut]):
    total: int
