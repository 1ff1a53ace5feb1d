"""Ingestion use cases: upload, import, process_video (decode into clips), recovery, delete.

Functions here own no framework: they take settings, a blob store and sessions, and do one
piece of work. Tasks stay thin wrappers around them (DESIGN section 5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import videos as video_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Job, Video
from tagloop.db.tags import unstorable
from tagloop.errors import (
    Forbidden,
    InvalidInput,
    InvalidMedia,
    NotFound,
    TagloopError,
    TransientError,
)
from tagloop.media.probe import MediaInfo, probe_media
from tagloop.storage import BlobStore, StreamedBlob, clip_key, upload_key, video_key

if TYPE_CHECKING:
    from tagloop.media.extract import ClipMedia

log = logging.getLogger(__name__)

PROCESS_VIDEO_JOB = "process_video"


@dataclass(frozen=True)
class IngestResult:
    video: Video
    duplicate: bool
    job_id: int | None  # the job to enqueue, None when nothing needs to run


def ingest_stream(
    session: Session,
    *,
    store: BlobStore,
    stream: BinaryIO | IO[bytes],
    filename: str,
    max_bytes: int | None,
) -> IngestResult:
    """Stream bytes into the blob store, dedupe by SHA-256, probe, and register a video.

    Bad bytes (empty, not a video) raise InvalidMedia and leave nothing behind. The same
    bytes twice give the same video with ``duplicate=True``, also when the requests race:
    the row is claimed first (one wins per sha256) and only the winner moves its upload into
    the video's key, so a loser deletes nothing but its own private upload and never touches
    a blob that a row references.
    """
    temp = store.put_stream(upload_key(), stream, max_bytes=max_bytes)
    try:
        if temp.size == 0:
            raise InvalidMedia("the file is empty (0 bytes)", code="empty_file")
        existing = video_repo.find_video_by_sha(session, temp.sha256)
        if existing is not None:
            return _duplicate(session, existing)
        info = _probe_blob(store, temp.key)
        key = video_key(temp.sha256, filename)
        video = _claim_video(session, temp=temp, key=key, filename=filename, info=info)
        if video is None:
            return _duplicate(session, _winner_of(session, temp.sha256))
        # The row is ours and uncommitted: the blob is in place before anyone can see it.
        store.move(temp.key, key)
    finally:
        store.delete(temp.key)  # a no-op once moved
    job = job_repo.create_job(session, kind=PROCESS_VIDEO_JOB, params={"video_id": video.id})
    return IngestResult(video, False, job.id)


def _claim_video(
    session: Session, *, temp: StreamedBlob, key: str, filename: str, info: MediaInfo
) -> Video | None:
    """The new video row, or None when a concurrent request registered the same bytes."""
    return video_repo.add_video_unless_sha_exists(
        session,
        sha256=temp.sha256,
        filename=Path(filename).name or "video",
        blob_uri=key,
        size_bytes=temp.size,
        status="queued",
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
        fps=info.fps,
        has_audio=info.has_audio,
    )


def _winner_of(session: Session, sha256: str) -> Video:
    existing = video_repo.find_video_by_sha(session, sha256)
    if existing is None:  # the winner's row was deleted in the meantime
        raise TransientError(
            "a concurrent upload of the same file was removed; try again",
            code="ingest_conflict",
        )
    return existing


def _duplicate(session: Session, existing: Video) -> IngestResult:
    return IngestResult(existing, True, _requeue_if_stuck(session, existing))


# Longer than any path a file system resolves (PATH_MAX is 4096 on Linux).
MAX_IMPORT_PATH = 4096


def resolve_import_path(path: str, *, roots: list[Path]) -> Path:
    """The real path of an import request, refused unless it lies under a configured root.

    Symlinks and ``..`` are resolved first, so neither can escape a root.
    """
    if not roots:
        raise Forbidden(
            "no import roots are configured (TAGLOOP_IMPORT_ROOTS)", code="import_disabled"
        )
    if "\x00" in path or len(path) > MAX_IMPORT_PATH or unstorable(path):
        # NUL, a lone surrogate (not encodable for the file system) or absurdly long.
        raise InvalidInput("invalid path", code="invalid_path")
    try:
        real = Path(path).expanduser().resolve()
        if not any(real.is_relative_to(root) for root in roots):
            raise Forbidden(f"{path} is outside the import roots", code="path_not_allowed")
        is_file = real.is_file()
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop (RuntimeError)
        raise InvalidInput(
            f"cannot resolve this path ({type(exc).__name__}: too long, or a symlink loop)",
            code="invalid_path",
        ) from exc
    if not is_file:
        raise NotFound(f"{path} is not a file", code="file_not_found")
    return real


def ingest_path(
    session: Session, *, store: BlobStore, path: Path, max_bytes: int | None
) -> IngestResult:
    with path.open("rb") as f:
        return ingest_stream(
            session, store=store, stream=f, filename=path.name, max_bytes=max_bytes
        )


def _requeue_if_stuck(session: Session, video: Video) -> int | None:
    """A duplicate upload of a failed or orphaned video is a retry: give it a new job."""
    if video.status == "ready":
        return None
    if job_repo.active_job_for(session, kind=PROCESS_VIDEO_JOB, key="video_id", value=video.id):
        return None
    video.status, video.error_code, video.error_message = "queued", None, None
    return job_repo.create_job(session, kind=PROCESS_VIDEO_JOB, params={"video_id": video.id}).id


def _probe_blob(store: BlobStore, key: str) -> MediaInfo:
    local = store.local_path(key)
    if local is not None:
        return probe_media(local)
    with store.open(key) as f:
        return probe_media(f)


def _apply_info(video: Video, info: MediaInfo) -> None:
    video.duration_s = info.duration_s
    video.width, video.height = info.width, info.height
    video.fps = info.fps
    video.has_audio = info.has_audio


def process_video(
    *,
    settings: Settings,
    video_id: int,
    job_id: int,
    task_id: str | None = None,
    on_clip: Callable[[int], None] | None = None,
) -> str:
    """Decode a video once, store every clip's tensors, preview and thumbnail.

    Each clip's visual embedding is computed here, once, from keyframes decoded from the
    source at the encoder's input size (``features.visual_embedding``), unless
    ``settings.visual_encoder`` is ``"none"``. Missing weights end the video ``failed`` with
    a ``visual_weights_*`` code (MissingWeights) before anything is decoded.

    Idempotent and resumable: clips already stored are skipped, so a redelivered task
    finishes the work instead of duplicating it. Each clip commits on its own and beats the
    job's heartbeat. Returns the video's final status. InvalidMedia ends the video ``failed``
    (its partial clips removed); any other error propagates so the task can retry.
    """
    # Imported here so the API (which imports this module for ingest) never loads torch.
    from tagloop.features.clip_tensor import dump_clip_tensors
    from tagloop.media.segment import plan_clips
    from tagloop.pipeline.clip_extraction import iter_clip_tensors, load_ingest_encoder

    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        video = video_repo.get_video(session, video_id)
        job = job_repo.get_job(session, job_id)
        if video.status == "ready" and job.status in ("succeeded", "failed"):
            return video.status  # a redelivered message for finished work
        if job.attempts >= settings.max_job_attempts:
            _fail(
                session,
                store,
                video,
                job,
                code="too_many_attempts",
                message=f"gave up after {job.attempts} attempts (the worker kept dying)",
            )
            return "failed"
        job_repo.start_job(session, job, celery_task_id=task_id)
        video.status = "processing"
        blob_uri = video.blob_uri
        done = {c.index for c in video_repo.clips_of_video(session, video_id) if c.tensor_uri}

    try:
        # Loaded once per worker process (a module cache); first, so missing weights fail
        # the video at once instead of after decoding it.
        encoder = load_ingest_encoder(settings)
        info = _probe_blob(store, blob_uri)
        windows = plan_clips(info.duration_s, clip_seconds=settings.clip_seconds)
        with session_scope(settings.database_url) as session:
            _apply_info(video_repo.get_video(session, video_id), info)
            # Drop rows past the plan (a changed clip length since an earlier attempt).
            for clip in video_repo.clips_of_video(session, video_id):
                if clip.index >= len(windows):
                    session.delete(clip)
        local = store.local_path(blob_uri)
        with _open_source(store, blob_uri, local) as source:
            for media, tensors in iter_clip_tensors(
                source, info=info, settings=settings, encoder=encoder, skip_indices=done
            ):
                keys = {
                    "tensor": store.put_bytes(
                        clip_key(video_id, media.index, "tensor"), dump_clip_tensors(tensors)
                    ),
                    "preview": store.put_bytes(
                        clip_key(video_id, media.index, "preview"), media.preview_mp4
                    ),
                    "thumbnail": store.put_bytes(
                        clip_key(video_id, media.index, "thumbnail"), media.thumbnail_jpeg
                    ),
                }
                with session_scope(settings.database_url) as session:
                    _upsert_clip(
                        session,
                        video_id=video_id,
                        media=media,
                        keys=keys,
                        has_audio=tensors.audio_mask,
                    )
                    job_repo.report_progress(
                        session,
                        job_repo.get_job(session, job_id),
                        progress=(media.index + 1) / len(windows),
                        message=f"clip {media.index + 1}/{len(windows)}",
                    )
                if on_clip is not None:
                    on_clip(media.index)
    except InvalidMedia as exc:
        with session_scope(settings.database_url) as session:
            _fail(
                session,
                store,
                video_repo.get_video(session, video_id),
                job_repo.get_job(session, job_id),
                code=exc.code,
                message=exc.message,
            )
        return "failed"

    with session_scope(settings.database_url) as session:
        video = video_repo.get_video(session, video_id)
        video.status, video.error_code, video.error_message = "ready", None, None
        job_repo.finish_job(
            session,
            job_repo.get_job(session, job_id),
            status="succeeded",
            message=f"{len(windows)} clips",
        )
    return "ready"


def mark_failed(*, settings: Settings, video_id: int, job_id: int, code: str, message: str) -> None:
    """End a video that can't be processed (retries exhausted, say) with a code."""
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        _fail(
            session,
            store,
            video_repo.get_video(session, video_id),
            job_repo.get_job(session, job_id),
            code=code,
            message=message,
        )


def _fail(
    session: Session, store: BlobStore, video: Video, job: Job, *, code: str, message: str
) -> None:
    keys = _clip_blob_keys(video_repo.clips_of_video(session, video.id))
    for clip in video_repo.clips_of_video(session, video.id):
        session.delete(clip)
    video.status, video.error_code, video.error_message = "failed", code, message
    job_repo.finish_job(session, job, status="failed", message=f"{code}: {message}")
    session.flush()
    store.delete_many(keys)


def _clip_blob_keys(clips: list[Clip]) -> list[str | None]:
    return [k for c in clips for k in (c.tensor_uri, c.preview_uri, c.thumbnail_uri)]


def _upsert_clip(
    session: Session, *, video_id: int, media: ClipMedia, keys: dict[str, str], has_audio: bool
) -> None:
    clip = session.scalar(select(Clip).where(Clip.video_id == video_id, Clip.index == media.index))
    if clip is None:
        clip = Clip(video_id=video_id, index=media.index)
        session.add(clip)
    clip.start_s, clip.end_s = media.start_s, media.end_s
    clip.has_audio = has_audio
    clip.tensor_uri, clip.preview_uri = keys["tensor"], keys["preview"]
    clip.thumbnail_uri = keys["thumbnail"]
    clip.status = "ready"


@contextmanager
def _open_source(store: BlobStore, key: str, local: str | None) -> Iterator[str | BinaryIO]:
    """PyAV opens a local path directly; a remote blob is opened as a file object."""
    if local is not None:
        yield local
        return
    with store.open(key) as f:
        yield f


def recover_stale_jobs(*, settings: Settings) -> list[tuple[int, int]]:
    """Find running video jobs whose worker died; return (video_id, job_id) to re-enqueue.

    A job that already used up its attempts ends ``failed`` with code ``worker_lost``
    instead, so a video that kills its worker cannot loop forever.
    """
    store = BlobStore(settings.blob_url)
    requeue: list[tuple[int, int]] = []
    with session_scope(settings.database_url) as session:
        stale = job_repo.find_stale_jobs(
            session, older_than=timedelta(seconds=settings.stale_job_seconds)
        )
        for job in stale:
            if job.kind != PROCESS_VIDEO_JOB:
                # Training and scoring are rerun by the next schedule; just don't leave
                # them "running" forever.
                job_repo.finish_job(
                    session, job, status="failed", message="worker_lost: its worker stopped beating"
                )
                continue
            video_id = int(job.params["video_id"])
            video = session.get(Video, video_id)
            if video is None:
                job_repo.finish_job(session, job, status="failed", message="video deleted")
                continue
            if job.attempts >= settings.max_job_attempts:
                _fail(
                    session,
                    store,
                    video,
                    job,
                    code="worker_lost",
                    message=f"the worker was lost {job.attempts} times processing this video",
                )
                continue
            job.status = "queued"
            job_repo.report_progress(
                session, job, progress=job.progress, message="re-enqueued after its worker was lost"
            )
            requeue.append((video_id, job.id))
    if requeue:
        log.warning("re-enqueued %d lost video jobs: %s", len(requeue), requeue)
    return requeue


def delete_video(session: Session, *, video_id: int) -> list[str]:
    """Delete a video and everything derived from it; returns the blob keys to remove
    once the caller has committed (rows first, so no row ever points at a missing blob)."""
    video = video_repo.get_video(session, video_id)
    keys = [k for k in _clip_blob_keys(video_repo.clips_of_video(session, video_id)) if k]
    keys.append(video.blob_uri)
    session.delete(video)
    session.flush()
    return keys


def create_job(*, settings: Settings, kind: str, params: dict[str, object] | None = None) -> int:
    with session_scope(settings.database_url) as session:
        return job_repo.create_job(session, kind=kind, params=dict(params or {})).id


def fail_job(*, settings: Settings, job_id: int, code: str, message: str) -> None:
    """End any job ``failed`` with a code a person can act on."""
    with session_scope(settings.database_url) as session:
        job_repo.finish_job(
            session,
            job_repo.get_job(session, job_id),
            status="failed",
            message=f"{code}: {message}",
        )


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(code, message) for any exception, for job rows and logs."""
    if isinstance(exc, TagloopError):
        return exc.code, exc.message
    return "internal_error", f"{type(exc).__name__}: {exc}"
