"""Clips: list, detail, and the browser preview with HTTP Range."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.api.deps import AdminDep, CallerDep, SenderDep, SessionDep, SettingsDep, StoreDep
from services.api.http_range import parse_range
from services.api.schemas import (
    ClipDetail,
    ClipOut,
    LabelOut,
    Page,
    PathId,
    QueryId,
    decode_cursor,
    encode_cursor,
)
from services.api.signed_media import MediaAccessDep
from tagloop.db import holdout as holdout_repo
from tagloop.db import videos as video_repo
from tagloop.errors import NotFound
from tagloop.pipeline import loop
from tagloop.pipeline.dispatch import dispatch
from tagloop.storage import BlobStore

router = APIRouter(prefix="/api/v1/clips", tags=["clips"])
CHUNK = 256 * 1024
ClipId = PathId


@router.get("", response_model=Page[ClipOut])
def list_clips(
    _: CallerDep,
    session: SessionDep,
    video_id: QueryId = None,
    labeled: Annotated[bool | None, Query()] = None,
    needs_review: Annotated[bool | None, Query()] = None,
    split: Annotated[Literal["pool", "holdout"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> Page[ClipOut]:
    """Clips by id; ``needs_review=true`` lists the parked ones (skipped by too many
    annotators), ``split`` the pool or the holdout (the audit sample)."""
    clips = video_repo.list_clips(
        session,
        video_id=video_id,
        labeled=labeled,
        needs_review=needs_review,
        split=split,
        limit=limit,
        after_id=decode_cursor(cursor),
    )
    next_cursor = encode_cursor(clips[-1].id) if len(clips) == limit else None
    return Page[ClipOut](items=[ClipOut.model_validate(c) for c in clips], next_cursor=next_cursor)


@router.get("/{clip_id}", response_model=ClipDetail)
def get_clip(clip_id: ClipId, _: CallerDep, session: SessionDep) -> ClipDetail:
    clip = video_repo.get_clip(session, clip_id)
    out = ClipDetail.model_validate(clip)
    out.labels = [LabelOut.model_validate(lb) for lb in video_repo.labels_of_clip(session, clip_id)]
    pred = video_repo.latest_prediction(session, clip_id)
    if pred is not None:
        out.prediction = {
            "model_version_id": pred.model_version_id,
            "top_tags": pred.top_tags,
            "uncertainty": pred.uncertainty,
            "created_at": pred.created_at.isoformat(),
        }
    return out


@router.post("/{clip_id}/review", response_model=ClipOut)
def review_clip(
    clip_id: ClipId,
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    sender: SenderDep,
) -> ClipOut:
    """Un-park a clip an admin has looked at (``needs_review`` off): the queues may offer it
    again, though never to the annotators who already skipped it. ``clip_not_found`` (404)."""
    clip = video_repo.mark_reviewed(session, clip_id)
    if clip.split == "holdout":
        # The holdout lane is not refilled by the loop; put the clip back in it now.
        holdout_repo.fill_holdout_queue(session)
    out = ClipOut.model_validate(clip)
    session.commit()
    # An active-learning clip is offerable again: a low queue may take it at the next refill.
    dispatch(session, sender, loop.on_clip_reviewed(session, settings=settings))
    return out


def _iter_range(store: BlobStore, key: str, start: int, length: int) -> Iterator[bytes]:
    with store.open(key) as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def _serve_blob(request: Request, store: BlobStore, key: str | None, media_type: str) -> Response:
    if not key or not store.exists(key):
        raise NotFound("this clip has no media yet", code="media_not_found")
    size = store.size(key)
    rng = parse_range(request.headers.get("range"), size)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if rng is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(
            _iter_range(store, key, 0, size), media_type=media_type, headers=headers
        )
    start, end = rng
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        _iter_range(store, key, start, end - start + 1),
        status_code=206,
        media_type=media_type,
        headers=headers,
    )


@router.get("/{clip_id}/media")
def clip_media(
    clip_id: ClipId, request: Request, _: MediaAccessDep, session: SessionDep, store: StoreDep
) -> Response:
    """The clip's H.264/AAC mp4 preview; supports ``Range`` (206) for seeking in browsers.
    A signed URL (``expires``, ``sig``: ``GET /export?...&signed_urls=true``) needs no token."""
    clip = video_repo.get_clip(session, clip_id)
    return _serve_blob(request, store, clip.preview_uri, "video/mp4")


@router.get("/{clip_id}/thumbnail")
def clip_thumbnail(
    clip_id: ClipId, request: Request, _: CallerDep, session: SessionDep, store: StoreDep
) -> Response:
    clip = video_repo.get_clip(session, clip_id)
    return _serve_blob(request, store, clip.thumbnail_uri, "image/jpeg")
