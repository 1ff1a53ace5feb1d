"""Video ingestion: upload, import from allowed folders, list, get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, UploadFile, status

from services.api.deps import AdminDep, CallerDep, SenderDep, SessionDep, SettingsDep, StoreDep
from services.api.limits import MULTIPART_OVERHEAD
from services.api.schemas import (
    ImportRequest,
    Page,
    PathId,
    VideoOut,
    decode_cursor,
    encode_cursor,
)
from tagloop import pipeline
from tagloop.db import videos as video_repo
from tagloop.db.models import Video
from tagloop.errors import InvalidInput, PayloadTooLarge
from tagloop.task_names import PROCESS_VIDEO

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])


def _out(
    video: Video, *, n_clips: int = 0, result: pipeline.IngestResult | None = None
) -> VideoOut:
    out = VideoOut.model_validate(video)
    out.n_clips = n_clips
    if result is not None:
        out.duplicate, out.job_id = result.duplicate, result.job_id
    return out


def _accept(session: SessionDep, sender: SenderDep, result: pipeline.IngestResult) -> VideoOut:
    """Commit, send the video's job (if any) and answer with the video; a duplicate answers
    with the existing video's real clip count."""
    # Commit first so the worker finds the rows the message points to.
    session.commit()
    if result.job_id is not None:
        sender.send(PROCESS_VIDEO, result.video.id, result.job_id)
    video_id = result.video.id
    n_clips = (
        video_repo.count_clips(session, [video_id]).get(video_id, 0) if result.duplicate else 0
    )
    return _out(result.video, n_clips=n_clips, result=result)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=VideoOut)
def upload_video(
    request: Request,
    file: UploadFile,
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    sender: SenderDep,
) -> VideoOut:
    """Upload a video (multipart field ``file``); 202 with the video, ``duplicate: true``
    when the same bytes were ingested before."""
    # The request gate (limits.py) refused a larger body before it was read; this stays for
    # an app mounted without it.
    declared = int(request.headers.get("content-length") or 0)
    if declared > settings.upload_max_bytes + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"upload is larger than the limit of {settings.upload_max_bytes} bytes",
            code="upload_too_large",
        )
    result = pipeline.ingest_stream(
        session,
        store=store,
        stream=file.file,
        filename=file.filename or "video",
        max_bytes=settings.upload_max_bytes,
    )
    return _accept(session, sender, result)


@router.post("/import", status_code=status.HTTP_202_ACCEPTED, response_model=VideoOut)
def import_video(
    body: ImportRequest,
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    sender: SenderDep,
) -> VideoOut:
    """Ingest a file already on the server, only from under the configured import roots."""
    path = pipeline.resolve_import_path(body.path, roots=settings.import_roots)
    result = pipeline.ingest_path(
        session, store=store, path=path, max_bytes=settings.upload_max_bytes
    )
    return _accept(session, sender, result)


@router.get("", response_model=Page[VideoOut])
def list_videos(
    _: CallerDep,
    session: SessionDep,
    status: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> Page[VideoOut]:
    if status is not None and status not in video_repo.VIDEO_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(video_repo.VIDEO_STATUSES)}", code="invalid_status"
        )
    videos = video_repo.list_videos(
        session, status=status, limit=limit, after_id=decode_cursor(cursor)
    )
    counts = video_repo.count_clips(session, [v.id for v in videos])
    items = [_out(v, n_clips=counts.get(v.id, 0)) for v in videos]
    next_cursor = encode_cursor(videos[-1].id) if len(videos) == limit else None
    return Page[VideoOut](items=items, next_cursor=next_cursor)


@router.get("/{video_id}", response_model=VideoOut)
def get_video(video_id: PathId, _: CallerDep, session: SessionDep) -> VideoOut:
    video = video_repo.get_video(session, video_id)
    return _out(video, n_clips=video_repo.count_clips(session, [video_id]).get(video_id, 0))


@router.delete("/{video_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_video(video_id: PathId, _: AdminDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a video with its clips, labels, predictions and blobs."""
    keys = pipeline.delete_video(session, video_id=video_id)
    session.commit()
    store.delete_many(keys)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
