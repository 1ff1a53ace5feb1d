"""Which blob keys rows point at: the blob sweep's question. Read-only, never commits.

The rows that reference blobs: ``video.blob_uri``, ``clip.tensor_uri`` / ``preview_uri`` /
``thumbnail_uri``, ``prediction.embedding_uri`` (``<key>#<row>``, one ``.npy`` per scoring
page) and ``model_version.artifact_uri``. Keys are looked up through the ids they carry
(a video's sha256, a clip's video id, an embedding's version and first clip id), so each
check uses an index instead of scanning a table of millions of clips or predictions. A key
whose shape is not recognised is checked against every column that could hold it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tagloop.db.models import Clip, ModelVersion, Prediction, Video

# The shapes of storage.video_key, storage.clip_key and scoring's embedding pages.
_VIDEO_KEY = re.compile(r"^videos/[0-9a-f]{2}/(?P<sha>[0-9a-f]{64})/[^/]+$")
_CLIP_KEY = re.compile(r"^clips/(?P<video_id>\d+)/[^/]+$")
_EMBEDDING_KEY = re.compile(r"^embeddings/(?P<version>\d+)/(?P<name>[^/]+)$")
_EMBEDDING_PAGE = re.compile(r"^(?P<first>\d+)\.npy$")


def referenced_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The subset of ``keys`` that some row references (call it with a bounded chunk)."""
    wanted = set(keys)
    found: set[str] = set()
    shas: set[str] = set()
    video_ids: set[int] = set()
    small_tables: list[str] = []  # video and model_version rows only
    other: list[str] = []
    for key in wanted:
        if m := _VIDEO_KEY.match(key):
            shas.add(m["sha"])
        elif m := _CLIP_KEY.match(key):
            video_ids.add(int(m["video_id"]))
        elif m := _EMBEDDING_KEY.match(key):
            if _embedding_referenced(session, key, int(m["version"]), m["name"]):
                found.add(key)
        elif key.startswith(("models/", "incoming/")):
            small_tables.append(key)
        else:
            other.append(key)
    if shas:
        found.update(session.scalars(select(Video.blob_uri).where(Video.sha256.in_(shas))))
    if video_ids:
        rows = session.execute(
            select(Clip.tensor_uri, Clip.preview_uri, Clip.thumbnail_uri).where(
                Clip.video_id.in_(video_ids)
            )
        )
        found.update(_flatten(rows))
    if small_tables:
        found.update(_referenced_by_video_or_model(session, small_tables))
    if other:
        found.update(_referenced_anywhere(session, other))
    return found & wanted


def _embedding_referenced(session: Session, key: str, version_id: int, name: str) -> bool:
    q = select(Prediction.id).where(
        Prediction.model_version_id == version_id,
        or_(
            Prediction.embedding_uri.startswith(f"{key}#", autoescape=True),
            Prediction.embedding_uri == key,
        ),
    )
    if page := _EMBEDDING_PAGE.match(name):
        # A scoring page holds clips in ascending id order from its first clip (the key's
        # name), so the (clip, version) index finds the page's first prediction at once.
        q = q.where(Prediction.clip_id >= int(page["first"]))
    return session.scalar(q.limit(1)) is not None


def _referenced_by_video_or_model(session: Session, keys: list[str]) -> set[str]:
    found = set(session.scalars(select(Video.blob_uri).where(Video.blob_uri.in_(keys))))
    found.update(
        uri
        for uri in session.scalars(
            select(ModelVersion.artifact_uri).where(ModelVersion.artifact_uri.in_(keys))
        )
        if uri
    )
    return found


def _referenced_anywhere(session: Session, keys: list[str]) -> set[str]:
    """Keys of no known shape (an older layout, say): every column, exactly. Slow on a big
    clip or prediction table, so only for the odd key."""
    found = _referenced_by_video_or_model(session, keys)
    rows = session.execute(
        select(Clip.tensor_uri, Clip.preview_uri, Clip.thumbnail_uri).where(
            or_(Clip.tensor_uri.in_(keys), Clip.preview_uri.in_(keys), Clip.thumbnail_uri.in_(keys))
        )
    )
    found.update(_flatten(rows))
    for key in keys:
        hit = session.scalar(
            select(Prediction.id)
            .where(
                or_(
                    Prediction.embedding_uri == key,
                    Prediction.embedding_uri.startswith(f"{key}#", autoescape=True),
                )
            )
            .limit(1)
        )
        if hit is not None:
            found.add(key)
    return found


def _flatten(rows: Iterable[Sequence[str | None]]) -> set[str]:
    return {uri for row in rows for uri in row if uri}
